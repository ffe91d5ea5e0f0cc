//! The data loader: decodes images on CPU threads ahead of the device, keeps decoded, resized
//! u8 images in memory while they fit a budget, and hands out u8 batches `[N, H, W, 3]`.
//!
//! Decoding is the only CPU-heavy step (augmentation runs on the device), so a batch is
//! decoded in parallel on rayon's pool by a producer thread that stays `prefetch` batches
//! ahead of the consumer; with the cache warm, an epoch costs only memcpy.
use crate::image::decode::{decode_file_region, Preprocess};
use crate::util::data_error::DataError;
use crate::data::augment::mask_plan::{SynthMask, SynthPlan};
use crate::data::augment::tight_crop::TightCropPlan;
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, OnceLock};
use tch::Tensor;

/// Decoded images by sample index, filled lazily up to a byte budget.
struct ImageCache {
    slots: Vec<OnceLock<Arc<[u8]>>>,
    budget: usize,
    used: AtomicUsize,
}

impl ImageCache {
    fn new(n: usize, budget_bytes: usize) -> ImageCache {
        ImageCache { slots: (0..n).map(|_| OnceLock::new()).collect(), budget: budget_bytes, used: AtomicUsize::new(0) }
    }

    fn get(&self, i: usize) -> Option<Arc<[u8]>> {
        self.slots[i].get().cloned()
    }

    fn offer(&self, i: usize, pixels: &Arc<[u8]>) {
        let n = pixels.len();
        // Reserve before storing so that concurrent decoders never overshoot the budget.
        if self.used.fetch_add(n, Ordering::Relaxed) + n <= self.budget {
            if self.slots[i].set(pixels.clone()).is_err() {
                self.used.fetch_sub(n, Ordering::Relaxed);
            }
        } else {
            self.used.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.get().is_some()).count()
    }
}

/// A batch of decoded images and the sample indices they came from.
pub struct Batch {
    /// uint8 `[N, H, W, 3]` on the CPU.
    pub images: Tensor,
    /// Sample index of each row.
    pub indices: Vec<usize>,
    /// The synthetic mask painted on each row, if any (training batches of `augment.synth_mask`).
    pub painted: Vec<Option<SynthMask>>,
}

/// What the loader does with an image it cannot decode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OnBadImage {
    /// Stop with an error naming the file.
    Fail,
    /// Report it and leave it out of its batch.
    Skip,
}

#[derive(Clone)]
pub struct Loader {
    paths: Arc<Vec<PathBuf>>,
    prep: Preprocess,
    /// Per sample, the region of the photo to crop instead of the centre crop (a face box); empty: none.
    regions: Arc<Vec<Option<[f32; 4]>>>,
    /// Per sample, the sample whose decoded image it shares (a copy's photo); empty: itself.
    sources: Arc<Vec<usize>>,
    /// Synthetic masks, painted only in batches of an epoch ([`Loader::for_epoch`]).
    synth: Option<Arc<SynthPlan>>,
    /// Tight crops of faces, cut only in batches of an epoch, after any synthetic mask.
    tight: Option<Arc<TightCropPlan>>,
    epoch: Option<usize>,
    cache: Arc<ImageCache>,
    prefetch: usize,
    on_bad: OnBadImage,
}

impl Loader {
    /// `cache_mib`: memory for decoded images (0 = no cache). `prefetch`: batches decoded ahead.
    pub fn new(paths: Vec<PathBuf>, prep: Preprocess, cache_mib: usize, prefetch: usize, on_bad: OnBadImage) -> Loader {
        let n = paths.len();
        Loader {
            paths: Arc::new(paths),
            prep,
            regions: Arc::new(Vec::new()),
            sources: Arc::new(Vec::new()),
            synth: None,
            tight: None,
            epoch: None,
            cache: Arc::new(ImageCache::new(n, cache_mib << 20)),
            prefetch: prefetch.max(1),
            on_bad,
        }
    }

    /// Crops sample `i` to `regions[i]` where it is Some (the rest keep the centre crop).
    pub fn with_regions(mut self, regions: Vec<Option<[f32; 4]>>) -> Loader {
        assert_eq!(regions.len(), self.paths.len(), "one region per sample");
        self.regions = Arc::new(regions);
        self
    }

    /// Samples that repeat another sample's photo (`sources[i]`, itself for the others): they are
    /// decoded and cached once, and painted and cut on their own.
    pub fn with_sources(mut self, sources: Vec<usize>) -> Loader {
        assert_eq!(sources.len(), self.paths.len(), "one source per sample");
        self.sources = Arc::new(sources);
        self
    }

    /// Paints synthetic masks as `plan` says in the batches of [`Loader::for_epoch`].
    pub fn with_synth(mut self, plan: SynthPlan) -> Loader {
        assert_eq!(plan.faces.len(), self.paths.len(), "one plan entry per sample");
        self.synth = Some(Arc::new(plan));
        self
    }

    /// Cuts samples to tight crops of their faces as `plan` says in the batches of [`Loader::for_epoch`].
    pub fn with_tight_crop(mut self, plan: TightCropPlan) -> Loader {
        assert_eq!(plan.boxes.len(), self.paths.len(), "one plan entry per sample");
        self.tight = Some(Arc::new(plan));
        self
    }

    /// This loader for the training batches of `epoch`: synthetic masks painted and tight crops
    /// cut (if planned).
    pub fn for_epoch(&self, epoch: usize) -> Loader {
        Loader { epoch: Some(epoch), ..self.clone() }
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn cached_images(&self) -> usize {
        self.cache.len()
    }

    pub fn preprocess(&self) -> &Preprocess {
        &self.prep
    }

    fn pixels(&self, i: usize) -> Result<Arc<[u8]>, DataError> {
        let i = self.sources.get(i).copied().unwrap_or(i);
        if let Some(p) = self.cache.get(i) {
            return Ok(p);
        }
        let region = self.regions.get(i).copied().flatten();
        let img = decode_file_region(&self.paths[i], region, &self.prep)?;
        let pixels: Arc<[u8]> = img.data.into();
        self.cache.offer(i, &pixels);
        Ok(pixels)
    }

    /// Decodes one batch now, in parallel.
    pub fn load(&self, indices: &[usize]) -> Result<Batch, DataError> {
        let paint = |i: usize, p: Arc<[u8]>| -> (Arc<[u8]>, Option<SynthMask>) {
            let Some(epoch) = self.epoch else { return (p, None) };
            let (p, mask) = match self.synth.as_ref().and_then(|plan| plan.paint(epoch, i, &p, &self.prep)) {
                Some((pixels, mask)) => (pixels.into(), Some(mask)),
                None => (p, None),
            };
            match self.tight.as_ref().and_then(|plan| plan.apply(epoch, i, &p, &self.prep, mask.map(|m| m.label))) {
                Some(pixels) => (pixels.into(), mask),
                None => (p, mask),
            }
        };
        // A panic while decoding or painting one image is that image's error (skipped and
        // reported like an unreadable file under `skip_bad`), never a lost batch.
        let decoded: Vec<(usize, Result<(Arc<[u8]>, Option<SynthMask>), DataError>)> = indices
            .par_iter()
            .map(|&i| {
                let result = crate::util::panic::catch(|| self.pixels(i).map(|p| paint(i, p)));
                (i, result.unwrap_or_else(|msg| Err(DataError::file(&self.paths[i], msg))))
            })
            .collect();
        let (h, w) = (self.prep.height as usize, self.prep.width as usize);
        let mut buf = Vec::with_capacity(indices.len() * h * w * 3);
        let mut kept = Vec::with_capacity(indices.len());
        let mut painted = Vec::with_capacity(indices.len());
        for (i, r) in decoded {
            match r {
                Ok((p, wear)) => {
                    buf.extend_from_slice(&p);
                    kept.push(i);
                    painted.push(wear);
                }
                Err(e) if self.on_bad == OnBadImage::Skip => {
                    crate::util::skips::warn_skipped(&e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        let images = Tensor::from_slice(&buf).view([kept.len() as i64, h as i64, w as i64, 3]);
        Ok(Batch { images, indices: kept, painted })
    }

    /// Batches of `order` (in that order), decoded by a background thread `prefetch` batches ahead.
    /// With `drop_last`, a final incomplete batch is left out (training); otherwise it is kept.
    pub fn batches(&self, order: Vec<usize>, batch_size: usize, drop_last: bool) -> BatchIter {
        let batch_size = batch_size.max(1);
        let mut chunks: Vec<Vec<usize>> = order.chunks(batch_size).map(|c| c.to_vec()).collect();
        if drop_last && chunks.last().is_some_and(|c| c.len() < batch_size) && chunks.len() > 1 {
            chunks.pop();
        }
        let total = chunks.len();
        let (tx, rx) = sync_channel(self.prefetch);
        let loader = self.clone();
        std::thread::spawn(move || {
            for chunk in chunks {
                let first = chunk.first().map(|&i| loader.paths[i].clone()).unwrap_or_default();
                let batch = crate::util::panic::catch(|| loader.load(&chunk))
                    .unwrap_or_else(|msg| Err(DataError::file(&first, format!("in the batch of {} images starting with this one: {msg}", chunk.len()))));
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return; // the consumer went away, or we reported an error
                }
            }
        });
        BatchIter { rx, total, received: 0, ended: false }
    }
}

/// The batches of [`Loader::batches`]. Every batch arrives, or an error: a decoding thread that
/// stopped early is an error, never a shorter epoch.
pub struct BatchIter {
    rx: Receiver<Result<Batch, DataError>>,
    total: usize,
    received: usize,
    ended: bool,
}

impl BatchIter {
    /// Batches this iterator yields in all.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.ended {
            return None;
        }
        match self.rx.recv() {
            Ok(batch) => {
                self.received += 1;
                self.ended = batch.is_err();
                Some(batch)
            }
            Err(_) => {
                self.ended = true;
                (self.received < self.total).then(|| {
                    Err(DataError::file(
                        std::path::Path::new("(data loader)"),
                        format!("the decoding thread stopped after {} of {} batches", self.received, self.total),
                    ))
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::Crop;

    fn write_images(dir: &std::path::Path, n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| {
                let p = dir.join(format!("{i}.png"));
                image::RgbImage::from_pixel(20, 24, image::Rgb([i as u8 * 10, 0, 0])).save(&p).unwrap();
                p
            })
            .collect()
    }

    #[test]
    fn batches_keep_order_size_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_images(dir.path(), 7);
        let prep = Preprocess { crop: Crop::None, width: 8, height: 6 };
        let loader = Loader::new(paths, prep, 1, 2, OnBadImage::Fail);
        let order = vec![6, 0, 3, 1, 2, 5, 4];
        let batches: Vec<Batch> = loader.batches(order.clone(), 3, false).map(|b| b.unwrap()).collect();
        assert_eq!(batches.iter().map(|b| b.indices.len()).collect::<Vec<_>>(), vec![3, 3, 1]);
        assert_eq!(batches.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>(), order);
        assert_eq!(batches[0].images.size(), vec![3, 6, 8, 3]);
        assert_eq!(batches[0].images.kind(), tch::Kind::Uint8);
        // Row 0 is image 6: red = 60 everywhere.
        assert_eq!(batches[0].images.int64_value(&[0, 2, 3, 0]), 60);
        assert_eq!(loader.batches(order, 3, true).count(), 2);
        // Everything fit in the 1 MiB cache.
        assert_eq!(loader.cached_images(), 7);
    }

    #[test]
    fn tight_crops_are_cut_in_epoch_batches_only() {
        let dir = tempfile::tempdir().unwrap();
        // A horizontal ramp: each column its own red.
        let paths: Vec<PathBuf> = (0..2)
            .map(|i| {
                let p = dir.path().join(format!("{i}.png"));
                image::RgbImage::from_fn(20, 20, |x, _| image::Rgb([x as u8 * 10, 0, 0])).save(&p).unwrap();
                p
            })
            .collect();
        let prep = Preprocess { crop: Crop::None, width: 20, height: 20 };
        let plan = TightCropPlan { p: 1.0, seed: 1, boxes: vec![Some([6.0, 6.0, 14.0, 14.0]), None], masks: vec![crate::labels::Mask::NotWear; 2] };
        let loader = Loader::new(paths, prep, 1, 1, OnBadImage::Fail).with_tight_crop(plan.clone());
        let red = |b: &Batch, row: i64, x: i64| b.images.int64_value(&[row, 10, x, 0]);
        let plain = loader.load(&[0, 1]).unwrap();
        assert_eq!((red(&plain, 0, 0), red(&plain, 0, 19)), (0, 190), "validation and prediction loads are never cut");
        let cut = loader.for_epoch(1).load(&[0, 1]).unwrap();
        let [x1, _, x2, _] = plan.window(1, 0, crate::labels::Mask::NotWear, 20, 20).unwrap();
        assert_eq!(red(&cut, 0, 0), x1 as i64 * 10, "left of the window repeats its left column");
        assert_eq!(red(&cut, 0, 19), (x2 as i64 - 1) * 10, "right of it repeats its right column");
        assert_eq!(red(&cut, 0, 10), 100, "inside is unchanged");
        assert_eq!((red(&cut, 1, 0), red(&cut, 1, 19)), (0, 190), "a sample without a face box is left alone");
        assert_eq!(red(&loader.load(&[0]).unwrap(), 0, 0), 0, "the cache keeps the uncut image");
    }

    #[test]
    fn a_sample_with_a_source_shares_its_decoded_image() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_images(dir.path(), 3);
        let prep = Preprocess { crop: Crop::None, width: 8, height: 6 };
        // Sample 2 repeats sample 0 (its file too, as a copy does).
        let paths = vec![paths[0].clone(), paths[1].clone(), paths[0].clone()];
        let loader = Loader::new(paths, prep, 1, 1, OnBadImage::Fail).with_sources(vec![0, 1, 0]);
        let b = loader.load(&[2]).unwrap();
        assert_eq!(b.indices, vec![2]);
        assert_eq!(loader.cached_images(), 1, "cached under its source");
        loader.load(&[0, 1, 2]).unwrap();
        assert_eq!(loader.cached_images(), 2, "decoded once for the two samples");
        let again = loader.load(&[0, 2]).unwrap();
        assert!(again.images.get(0).equal(&again.images.get(1)));
    }

    #[test]
    fn cache_respects_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_images(dir.path(), 5);
        let prep = Preprocess { crop: Crop::None, width: 8, height: 6 };
        let loader = Loader { cache: Arc::new(ImageCache::new(5, 8 * 6 * 3 * 2)), ..Loader::new(paths, prep, 0, 1, OnBadImage::Fail) };
        loader.load(&[0, 1, 2, 3, 4]).unwrap();
        assert_eq!(loader.cached_images(), 2);
        let none = Loader::new(write_images(dir.path(), 3), prep, 0, 1, OnBadImage::Fail);
        none.load(&[0, 1, 2]).unwrap();
        assert_eq!(none.cached_images(), 0);
    }

    #[test]
    fn a_bad_image_fails_or_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = write_images(dir.path(), 3);
        let bad = dir.path().join("bad.jpg");
        std::fs::write(&bad, b"junk").unwrap();
        paths.push(bad);
        let prep = Preprocess { crop: Crop::None, width: 8, height: 6 };
        let strict = Loader::new(paths.clone(), prep, 0, 1, OnBadImage::Fail);
        let results: Vec<_> = strict.batches(vec![0, 1, 2, 3], 2, false).collect();
        assert!(results[1].as_ref().err().unwrap().to_string().contains("bad.jpg"));
        let lenient = Loader::new(paths, prep, 0, 1, OnBadImage::Skip);
        let b: Vec<Batch> = lenient.batches(vec![0, 1, 2, 3], 2, false).map(|b| b.unwrap()).collect();
        assert_eq!(b[1].indices, vec![2]);
        assert_eq!(b[1].images.size()[0], 1);
    }

    /// A region that makes the resize panic (NaN: `f64::clamp` panics on it) is the error of
    /// its image: it fails the epoch naming the file, or is skipped and reported; the other
    /// batches all arrive.
    #[test]
    fn a_panic_decoding_one_image_is_that_images_error() {
        let dir = tempfile::tempdir().unwrap();
        let paths = write_images(dir.path(), 4);
        let prep = Preprocess { crop: Crop::None, width: 8, height: 6 };
        let regions = vec![None, Some([f32::NAN, 0.0, 5.0, 5.0]), None, None];
        let strict = Loader::new(paths.clone(), prep, 0, 1, OnBadImage::Fail).with_regions(regions.clone());
        let results: Vec<_> = strict.batches(vec![0, 1, 2, 3], 2, false).collect();
        assert_eq!(results.len(), 1, "the epoch stops at the failed batch");
        let err = results[0].as_ref().err().unwrap().to_string();
        assert!(err.contains("1.png") && err.contains("internal error"), "{err}");
        let lenient = Loader::new(paths, prep, 0, 1, OnBadImage::Skip).with_regions(regions);
        let b: Vec<Batch> = lenient.batches(vec![0, 1, 2, 3], 2, false).map(|b| b.unwrap()).collect();
        assert_eq!(b.iter().map(|b| b.indices.clone()).collect::<Vec<_>>(), vec![vec![0], vec![2, 3]]);
    }

    /// A producer that stops before its last batch (a panic outside any image's work) ends the
    /// iteration with an error, not early.
    #[test]
    fn batches_that_stop_early_are_an_error() {
        let (tx, rx) = sync_channel(1);
        let producer = std::thread::spawn(move || {
            tx.send(Ok(Batch { images: Tensor::zeros([1, 2, 2, 3], (tch::Kind::Uint8, tch::Device::Cpu)), indices: vec![0], painted: vec![None] })).unwrap();
            panic!("the producer failed");
        });
        let results: Vec<_> = BatchIter { rx, total: 3, received: 0, ended: false }.collect();
        assert!(producer.join().is_err());
        assert_eq!(results.len(), 2);
        let err = results[1].as_ref().err().unwrap().to_string();
        assert!(err.contains("stopped after 1 of 3 batches"), "{err}");
    }
}
