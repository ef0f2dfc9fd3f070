def pytest_configure(config):
    config.addinivalue_line("markers", "cuda_build: builds the CUDA C++ extension with nvcc (CPU CI; deselect "
                                       "with -m 'not cuda_build')")
