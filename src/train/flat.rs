//! Flat buffers: many tensors of one dtype on one device laid out one after another in a single
//! contiguous buffer, so that an update over all of them is a handful of whole-buffer operations
//! instead of several kernel launches per tensor. The optimiser keeps its parameters, gradients
//! and moments this way, EMA its shadow weights, and data-parallel training all-reduces the
//! gradient buffer in one call per dtype.
//!
//! A slot keeps the memory layout of the tensor it was made for: a channels-last convolution
//! weight (`model::net::weights_to_channels_last`) lies in its slot in NHWC order, and its view
//! has channels-last strides, so the layout survives the move into the buffer.
use crate::model::net::is_channels_last;
use tch::{Device, Kind, Tensor};

/// Where one tensor lives in its buffer.
#[derive(Clone, Debug)]
pub struct Slot {
    pub name: String,
    /// In elements of the buffer's kind.
    pub offset: i64,
    pub numel: i64,
    pub shape: Vec<i64>,
    /// A 4-D tensor stored in NHWC order (its view has channels-last strides).
    pub channels_last: bool,
}

/// The layout of one buffer: the slots of its tensors, in order.
#[derive(Clone, Debug)]
pub struct FlatLayout {
    pub kind: Kind,
    pub device: Device,
    pub slots: Vec<Slot>,
    /// Elements in the buffer (the last slot's end, rounded up to the alignment).
    pub len: i64,
    align_bytes: i64,
}

impl FlatLayout {
    fn new(kind: Kind, device: Device, align_bytes: i64) -> FlatLayout {
        FlatLayout { kind, device, slots: Vec::new(), len: 0, align_bytes }
    }

    /// `offset` (in elements) rounded up to the next aligned element.
    fn aligned(&self, offset: i64) -> i64 {
        let step = (self.align_bytes / self.kind.elt_size_in_bytes() as i64).max(1);
        (offset + step - 1) / step * step
    }

    fn push(&mut self, name: String, tensor: &Tensor) {
        let offset = self.aligned(self.slots.last().map_or(0, |s| s.offset + s.numel));
        let channels_last = is_channels_last(tensor);
        self.slots.push(Slot { name, offset, numel: tensor.numel() as i64, shape: tensor.size(), channels_last });
        self.len = self.aligned(offset + tensor.numel() as i64);
    }

    /// A buffer of this layout filled with zeros (so alignment gaps hold no NaN or Inf).
    pub fn zeros(&self) -> Tensor {
        Tensor::zeros([self.len], (self.kind, self.device))
    }

    /// The slot's tensor: a view into `buffer`, shaped (and laid out) like the original.
    pub fn view(&self, buffer: &Tensor, slot: &Slot) -> Tensor {
        let flat = buffer.narrow(0, slot.offset, slot.numel);
        match slot.shape[..] {
            [n, c, h, w] if slot.channels_last => flat.view([n, h, w, c]).permute([0, 3, 1, 2]),
            _ => flat.view(slot.shape.as_slice()),
        }
    }

    /// `t`'s values in the slot's memory order, flat.
    fn flatten(slot: &Slot, t: &Tensor) -> Tensor {
        if slot.channels_last {
            t.permute([0, 2, 3, 1]).reshape([-1])
        } else {
            t.reshape([-1])
        }
    }

    /// The address of the slot's first element in `buffer`.
    pub fn address(&self, buffer: &Tensor, slot: &Slot) -> usize {
        buffer.data_ptr() as usize + slot.offset as usize * self.kind.elt_size_in_bytes()
    }

    /// A new buffer holding `value(slot)` of every slot (converted to the buffer's kind and
    /// device); None and alignment gaps are zeros. One `cat`, without gradient tracking.
    pub fn gather(&self, value: impl Fn(usize, &Slot) -> Option<Tensor>) -> Tensor {
        let mut pieces: Vec<Tensor> = Vec::with_capacity(2 * self.slots.len() + 1);
        let mut end = 0;
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.offset > end {
                pieces.push(Tensor::zeros([slot.offset - end], (self.kind, self.device)));
            }
            pieces.push(match value(i, slot) {
                Some(t) => Self::flatten(slot, &t.detach()).to_device(self.device).to_kind(self.kind),
                None => Tensor::zeros([slot.numel], (self.kind, self.device)),
            });
            end = slot.offset + slot.numel;
        }
        if self.len > end {
            pieces.push(Tensor::zeros([self.len - end], (self.kind, self.device)));
        }
        if pieces.is_empty() {
            return self.zeros();
        }
        tch::no_grad(|| Tensor::cat(&pieces, 0))
    }
}

/// Groups named tensors by dtype and device, keeping their order within a group, each slot's
/// start aligned to `align_bytes` (1 for none). Returns each layout with its tensors in slot order.
pub fn group_by_kind(tensors: impl IntoIterator<Item = (String, Tensor)>, align_bytes: i64) -> Vec<(FlatLayout, Vec<Tensor>)> {
    let mut groups: Vec<(FlatLayout, Vec<Tensor>)> = Vec::new();
    for (name, tensor) in tensors {
        let (kind, device) = (tensor.kind(), tensor.device());
        let index = match groups.iter().position(|(l, _)| l.kind == kind && l.device == device) {
            Some(i) => i,
            None => {
                groups.push((FlatLayout::new(kind, device, align_bytes), Vec::new()));
                groups.len() - 1
            }
        };
        let (layout, members) = &mut groups[index];
        layout.push(name, &tensor);
        members.push(tensor);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_are_grouped_by_kind_and_aligned_within_their_buffer() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let b = Tensor::from_slice(&[4i64]);
        let c = Tensor::from_slice(&[5.0f32, 6.0, 7.0, 8.0]).view([2, 2]);
        let groups = group_by_kind([("a".to_string(), a), ("b".to_string(), b), ("c".to_string(), c.shallow_clone())], 16);
        assert_eq!(groups.len(), 2);
        let (floats, members) = &groups[0];
        assert_eq!(floats.slots.iter().map(|s| (s.name.as_str(), s.offset)).collect::<Vec<_>>(), vec![("a", 0), ("c", 4)]);
        assert_eq!(floats.len, 8);
        let buffer = floats.gather(|i, _| Some(members[i].shallow_clone()));
        assert_eq!(Vec::<f32>::try_from(&buffer).unwrap(), vec![1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 7.0, 8.0]);
        assert!(floats.view(&buffer, &floats.slots[1]).equal(&c));
        assert_eq!(floats.address(&buffer, &floats.slots[1]) - buffer.data_ptr() as usize, 16);
        let none = floats.gather(|_, _| None);
        assert_eq!(Vec::<f32>::try_from(&none).unwrap(), vec![0.0; 8]);
    }

    #[test]
    fn a_channels_last_tensor_keeps_its_layout_in_the_buffer() {
        let values = Tensor::arange(2 * 3 * 2 * 2, (Kind::Float, Device::Cpu)).view([2, 3, 2, 2]);
        let nhwc = crate::model::net::to_channels_last(&values);
        let plain = Tensor::from_slice(&[9.0f32, 8.0]);
        let groups = group_by_kind([("w".to_string(), nhwc.shallow_clone()), ("b".to_string(), plain)], 1);
        let (layout, members) = &groups[0];
        assert!(layout.slots[0].channels_last && !layout.slots[1].channels_last);
        let buffer = layout.gather(|i, _| Some(members[i].shallow_clone()));
        // The buffer holds the weight in NHWC order: channel varies fastest.
        let expected: Vec<f32> = Vec::try_from(&values.permute([0, 2, 3, 1]).reshape([-1])).unwrap();
        assert_eq!(Vec::<f32>::try_from(&buffer.narrow(0, 0, 24)).unwrap(), expected);
        let view = layout.view(&buffer, &layout.slots[0]);
        assert!(view.equal(&values), "the same values");
        assert_eq!(view.stride(), nhwc.stride(), "channels-last strides");
        assert_eq!(view.data_ptr(), buffer.data_ptr(), "a view, not a copy");
        // A value given in plain (NCHW) layout lands in the same NHWC order.
        let again = layout.gather(|i, _| Some(if i == 0 { values.shallow_clone() } else { members[i].shallow_clone() }));
        assert!(again.equal(&buffer));
    }
}
