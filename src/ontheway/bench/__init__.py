"""Benchmarks (``ontheway bench ...``): each figure printed beside a reference measured on the
same servers in the same run, since these machines are small and noisy."""
