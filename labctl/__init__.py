"""labctl: run the workshop's distributed TensorFlow labs like Kubernetes Jobs, locally first.

Nothing in this package imports TensorFlow: lab programs and checks run as child processes.
"""
