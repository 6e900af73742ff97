// Evaluation: module overview lives here once the module has code.
