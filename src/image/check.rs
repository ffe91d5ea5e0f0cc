//! Is an image file whole? Cheap structural checks, on the bytes, that a decoder in lenient mode
//! would not make: a JPEG must reach its end-of-image marker after its scan data, and a PNG's
//! chunk list must reach `IEND`. A file cut short (a partial download or copy) fails them whatever
//! the fraction kept, where a lenient decoder would fill the missing rows with grey and say nothing.
//! Corruption inside the data is the decoders' job (strict JPEG decoding, PNG CRCs and zlib).

/// Ok when the JPEG's markers lead to a scan and an end-of-image marker follows it.
pub fn jpeg_is_whole(bytes: &[u8]) -> Result<(), String> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return Err("not a JPEG (no start-of-image marker)".into());
    }
    // Header segments up to the first start-of-scan. Each is skipped by its declared length, so
    // an EXIF thumbnail (a whole JPEG inside APP1) never counts as the image's own markers.
    let mut i = 2;
    let scan_start = loop {
        // Bytes that are not a marker are tolerated here (libjpeg warns about "extraneous bytes").
        while i < bytes.len() && bytes[i] != 0xFF {
            i += 1;
        }
        while i < bytes.len() && bytes[i] == 0xFF {
            i += 1;
        }
        let Some(&marker) = bytes.get(i) else {
            return Err("truncated JPEG: the file ends before its image data".into());
        };
        i += 1;
        match marker {
            0xDA => break i,
            0xD9 => return Err("corrupt JPEG: end-of-image marker before any image data".into()),
            // Markers without a length.
            0x01 | 0xD0..=0xD8 => {}
            _ => {
                let Some(len) = bytes.get(i..i + 2) else {
                    return Err("truncated JPEG: the file ends inside its headers".into());
                };
                i += u16::from_be_bytes([len[0], len[1]]) as usize;
            }
        }
    };
    // In scan data 0xFF is always followed by 0x00 (a stuffed byte) or a marker, so the first
    // FF D9 after the scan starts is the end-of-image marker (progressive files have several scans).
    if bytes.get(scan_start..).is_some_and(|rest| rest.windows(2).any(|w| w == [0xFF, 0xD9])) {
        Ok(())
    } else {
        Err("truncated JPEG: the file ends inside its image data (no end-of-image marker)".into())
    }
}

/// Ok when the PNG's chunks, each skipped by its declared length, reach an `IEND` chunk.
pub fn png_is_whole(bytes: &[u8]) -> Result<(), String> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1A, b'\n'];
    if !bytes.starts_with(&SIGNATURE) {
        return Err("not a PNG (no signature)".into());
    }
    let mut i = SIGNATURE.len();
    loop {
        let Some(head) = bytes.get(i..i + 8) else {
            return Err("truncated PNG: the file ends before its IEND chunk".into());
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if &head[4..8] == b"IEND" {
            // IEND holds no data: its CRC ends the file.
            return if bytes.len() >= i + 12 { Ok(()) } else { Err("truncated PNG: the file ends inside its IEND chunk".into()) };
        }
        // Length, type, data and CRC.
        i = i.saturating_add(12).saturating_add(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_files_pass_and_cut_ones_fail() {
        let img = image::RgbImage::from_fn(20, 12, |x, y| image::Rgb([(x * 12) as u8, (y * 20) as u8, 7]));
        let mut jpeg = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut jpeg), image::ImageFormat::Jpeg).unwrap();
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        assert_eq!(jpeg_is_whole(&jpeg), Ok(()));
        assert_eq!(png_is_whole(&png), Ok(()));
        for cut in [jpeg.len() / 3, jpeg.len() - 2, jpeg.len() - 1, 3] {
            assert!(jpeg_is_whole(&jpeg[..cut]).is_err(), "jpeg cut at {cut}");
        }
        for cut in [png.len() / 3, png.len() - 12, png.len() - 4, 9] {
            assert!(png_is_whole(&png[..cut]).is_err(), "png cut at {cut}");
        }
        // Trailing bytes after the end do not matter (some cameras append data).
        let mut tail = jpeg.clone();
        tail.extend_from_slice(b"trailer");
        assert_eq!(jpeg_is_whole(&tail), Ok(()));
    }
}
