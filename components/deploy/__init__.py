"""Deploy targets (lifecycle stage 5), one module per member: ``aws_lambda`` (a container
image behind a canary, run by ``canary``), ``sagemaker`` (a Serverless endpoint) and
``local`` (a managed serving process); ``base`` holds what they share. Importing this
package imports none of them."""
