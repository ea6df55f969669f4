"""Reading, checking and importing dataset files into snapshots."""
