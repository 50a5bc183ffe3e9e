"""The maintained benchmarks, each `python -m benchmarks.NAME --help`; BENCHMARKS.md holds their
latest figures with the command and machine of each. tests/test_benchmarks.py runs every one on
tiny inputs so they keep working as the code moves.

    aitex            AITEX-256 quality table: the default vs PatchCore, per fabric
    mixed_sizes      the default on synthetic mixed-size photo folders (any folder of images)
    inference_speed  PyTorch vs ONNX Runtime fp32 vs INT8 on one CPU, tiles and whole scans
    int8_calibration INT8 calibration variants: speed and tile AUROC against fp32
    gpu_speed        CUDA / TensorRT throughput and latency (on a machine with a GPU)
    service_load     the HTTP service against the bare engine, 1..16 clients and 4 cameras
    scaleout         the service in-process vs on Ray Serve replicas

The one-off experiments of the method's development are in docs/experiments.md; their scripts
were removed from the tree on 2026-12-03 and stay in git history (`git log -- benchmarks/`).
"""
