//! Images: strict, upright decoding of photo files (JPEG, PNG), their size from the header,
//! checks for cut-short files, and cropping and resizing to a model's input.
pub mod check;
pub mod decode;
