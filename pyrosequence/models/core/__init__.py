"""What every model stands on, apart from the model zoo: the seam (:mod:`~pyrosequence.models.core.base`,
``SequenceModel``), the piece contract, plain Pyro programs, model names and plugins, rebuilding an
instance from its run directory, missing values and time slicing. No module here defines a model
of a paper; none imports inference, training or the CLI."""
