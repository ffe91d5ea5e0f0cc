//! Images: strict, upright decoding of photo files (JPEG, PNG), their size from the header,
//! checks for cut-short files, cropping and resizing to a model's input (`region`: a region
//! that may reach beyond the photo), shrinking to a bounded working size, and batching decoded
//! images into one tensor.
pub mod batch;
pub mod check;
pub mod decode;
pub mod region;
pub mod shrink;
