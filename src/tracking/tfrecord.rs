//! TFRecord framing, the container of TensorBoard event files: each record is
//! `u64 length (LE) | u32 masked CRC-32C of the length bytes | data | u32 masked CRC-32C of data`.
use crc::{Crc, CRC_32_ISCSI};
use std::io::Write;

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// TFRecord stores a rotated and offset CRC so that a CRC of data that itself holds CRCs stays strong.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = CRC32C.checksum(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One record as bytes; written with a single `write_all` so that a reader never sees half a header.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

pub fn write_record(w: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    w.write_all(&frame(data))
}

/// The records of a file, in order, up to the first incomplete or corrupt one (a writer killed
/// mid-record leaves a torn tail); the flag tells whether the whole input was read cleanly.
pub fn read_records(bytes: &[u8]) -> (Vec<&[u8]>, bool) {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + 12) else { return (records, false) };
        let (len_bytes, len_crc) = header.split_at(8);
        if masked_crc(len_bytes).to_le_bytes() != len_crc {
            return (records, false);
        }
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes")) as usize;
        let start = at + 12;
        let Some(end) = start.checked_add(len).filter(|&e| e.checked_add(4).is_some_and(|t| t <= bytes.len())) else {
            return (records, false);
        };
        let data = &bytes[start..end];
        if masked_crc(data).to_le_bytes() != bytes[end..end + 4] {
            return (records, false);
        }
        records.push(data);
        at = end + 4;
    }
    (records, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // CRC-32C("123456789") = 0xE3069283 (RFC 3720, iSCSI).
        assert_eq!(CRC32C.checksum(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let mut file = Vec::new();
        for data in [&b"first"[..], b"", b"third record"] {
            write_record(&mut file, data).unwrap();
        }
        let (records, clean) = read_records(&file);
        assert!(clean);
        assert_eq!(records, vec![&b"first"[..], b"", b"third record"]);
        for cut in [file.len() - 1, file.len() - 10, 3] {
            let (records, clean) = read_records(&file[..cut]);
            assert!(!clean, "cut at {cut}");
            assert!(records.len() < 3);
        }
        let mut corrupt = file.clone();
        let n = corrupt.len();
        corrupt[n - 6] ^= 1; // a byte of the last record's data
        let (records, clean) = read_records(&corrupt);
        assert_eq!((records.len(), clean), (2, false));
    }
}
