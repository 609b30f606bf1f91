"""Task processors (issue 17, Elves' App-Processor): a webhook that receives each node's result and the summary."""
