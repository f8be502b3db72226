"""The report: tables (`bench.report.tables`) and plots (`bench.report.plots`) from records."""
