//! TF.js model files: any model.json and shard bytes decode into tensors that hold exactly the
//! values their manifest shapes declare, or an error. The input is a 4-byte little-endian JSON
//! length, the JSON, then the shard bytes: each group of the manifest gets an equal share of them
//! (the last group the rest), split evenly among the group's shard paths.
#![no_main]
use libfuzzer_sys::fuzz_target;
use masklab_fuzz::weights::tfjs;

fn split(bytes: &[u8], parts: usize) -> Vec<&[u8]> {
    let parts = parts.max(1);
    let each = bytes.len() / parts;
    (0..parts).map(|i| if i + 1 == parts { &bytes[i * each..] } else { &bytes[i * each..(i + 1) * each] }).collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let json_len = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let rest = &data[4..];
    let (json, blob) = rest.split_at(json_len.min(rest.len()));
    let Ok(model) = tfjs::parse_manifest(json) else { return };
    for (group, share) in model.manifest.iter().zip(split(blob, model.manifest.len())) {
        let shards: Vec<Vec<u8>> = split(share, group.paths.len()).into_iter().map(<[u8]>::to_vec).collect();
        let Ok(tensors) = tfjs::decode_group(group, &shards) else { continue };
        assert_eq!(tensors.len(), group.weights.len());
        for (t, spec) in tensors.iter().zip(&group.weights) {
            assert_eq!(t.name, spec.name);
            assert_eq!(t.values.len(), t.shape.iter().product::<usize>());
        }
    }
});
