"""Load generators and benchmarks. They print ratios against a reference measured in the same run."""
