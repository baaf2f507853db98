//! Search spaces: the RON schema, its validation and the sampling domains.
