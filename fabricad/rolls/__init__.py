"""Roll inspection: where a defect lies on the roll, one defect seen many times merged into one,
the 4-point grade, and the per-roll report. Pure logic; the service stores and serves it."""
