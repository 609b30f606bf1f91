"""What runs a workload (a process tree, a container): one interface, one module per driver."""
