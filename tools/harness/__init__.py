"""The local harness: runs the services as real processes and reads what they produce, for `make demo`,
the tests and `make bench` (processes.py), with one reader of the results topic (results.py); the fault
suite's table is made from the accounts its tests write (faults_report.py)."""
