//! Data sets: IDX and CSV loaders, built-in data sets, standardisation, splits and folds.
