"""What leaves the process and what feeds it: exporters, samplers, instrumentation.

Export branches off after recording and never feeds back into reports.
"""
