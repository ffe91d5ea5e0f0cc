//! Images: strict, upright decoding of photo files (JPEG, PNG), their size from the header,
//! checks for cut-short files, cropping and resizing to a model's input (`region`: a region
//! that may reach beyond the photo), and shrinking to a bounded working size.
pub mod check;
pub mod decode;
pub mod region;
pub mod shrink;
