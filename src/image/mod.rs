//! Images: strict, upright decoding of photo files (JPEG, PNG), their size from the header,
//! checks for cut-short files, and cropping and resizing to a model's input (`region`: a region
//! that may reach beyond the photo).
pub mod check;
pub mod decode;
pub mod region;
