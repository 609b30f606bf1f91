"""The public JSON of each resource, built from the rows and plain data the services return."""
