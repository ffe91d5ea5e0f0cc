//! Panics in worker threads, made into errors. A pool that decodes images (the loader, `faces`,
//! `predict --faces`, the service's decoders) runs each image's work through [`catch`], so a
//! panic is the error of the image it hit (counted as a bad image where skipping is allowed, the
//! command's error otherwise), never a thread that dies and takes its images with it unnoticed.
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The text a panic carried (`panic!("...")`, `expect`, an index out of bounds).
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs `work`; a panic in it becomes `Err("internal error (a bug in masklab): MESSAGE")`. The
/// work's own state is dropped with the panic (each call owns what it works on, so nothing half
/// changed is seen afterwards).
pub fn catch<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|payload| format!("internal error (a bug in masklab): {}", message(payload.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_with_its_message() {
        assert_eq!(catch(|| 7), Ok(7));
        let err = catch(|| -> u32 { panic!("region {} is NaN", 3) }).unwrap_err();
        assert!(err.contains("region 3 is NaN") && err.contains("internal error"), "{err}");
        let err = catch(|| -> u8 { panic!("static text") }).unwrap_err();
        assert!(err.contains("static text"), "{err}");
    }
}
