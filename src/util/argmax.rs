/// The index of the largest value, the first of equals; 0 for an empty slice. NaN never wins
/// (it compares false), so a row with NaNs still gets the largest real value.
pub fn argmax<T: PartialOrd>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn first_of_equals_and_nan_never_wins() {
        assert_eq!(argmax(&[0.1f32, 0.7, 0.7, 0.2]), 1);
        assert_eq!(argmax(&[0.3f64, f64::NAN, 0.5]), 2);
        assert_eq!(argmax::<f32>(&[]), 0);
    }
}
