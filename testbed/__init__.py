"""What the tests and the benchmarks both run: a real manager process on an
address range of its own (``testbed.manager``), and stand-ins for the clouds it
drives (``testbed.standins``)."""
