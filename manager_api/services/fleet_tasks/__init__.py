"""Fleet tasks (document 004): a command on many nodes, its reports, deadlines and live output."""
