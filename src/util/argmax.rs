/// The index of the largest value, the first of equals; 0 for an empty slice or one of NaNs only.
/// NaN never wins, wherever it stands: a row with NaNs gets its largest real value.
pub fn argmax<T: PartialOrd>(values: &[T]) -> usize {
    let is_nan = |v: &T| v.partial_cmp(v).is_none();
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if (is_nan(&values[best]) && !is_nan(v)) || *v > values[best] {
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
        assert_eq!(argmax(&[f32::NAN, 0.3, f32::NAN, 0.2]), 1);
        assert_eq!(argmax(&[f64::NAN, f64::NAN]), 0);
        assert_eq!(argmax::<f32>(&[]), 0);
    }
}
