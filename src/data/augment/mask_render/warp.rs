//! The warp from a mask template onto a face: piecewise affine over a fan of six sectors.
//!
//! Seven anchor points (six around the mask, clockwise on screen from its top centre, and one
//! inside it) split the plane into six sectors, each between two rays from the inner point. Each
//! sector maps affinely onto the matching sector of the other fan, so every anchor lands exactly
//! on its partner (a least-squares homography, as MaskTheFace fits to six points, does not), the
//! map is continuous (neighbouring sectors agree along their shared ray), and points beyond the
//! anchors (the mask's corners, its ear-loop ends) follow the nearest sector.

/// The number of anchor points: six around, then the one inside.
pub const ANCHORS: usize = 7;

/// Anchor points `[top, upper right, lower right, bottom, lower left, upper left, inner]`:
/// the six outer ones clockwise on screen (y down) around the inner one.
pub type Anchors = [[f32; 2]; ANCHORS];

fn sub(a: [f32; 2], b: [f32; 2]) -> [f32; 2] {
    [a[0] - b[0], a[1] - b[1]]
}

fn cross(a: [f32; 2], b: [f32; 2]) -> f32 {
    a[0] * b[1] - a[1] * b[0]
}

/// One side of the warp: the inner point and the rays to the six outer points.
#[derive(Clone, Copy, Debug)]
struct Fan {
    inner: [f32; 2],
    rays: [[f32; 2]; 6],
}

impl Fan {
    /// None unless the outer points go round the inner one clockwise on screen, each sector
    /// under half a turn and wider than a sliver, and everything is finite.
    fn new(anchors: &Anchors) -> Option<Fan> {
        if anchors.iter().flatten().any(|v| !v.is_finite()) {
            return None;
        }
        let inner = anchors[6];
        let rays: [[f32; 2]; 6] = std::array::from_fn(|i| sub(anchors[i], inner));
        let scale = rays.iter().map(|r| r[0].hypot(r[1])).fold(0.0f32, f32::max);
        if scale <= 1e-3 {
            return None;
        }
        let mut turn = 0.0f32;
        for i in 0..6 {
            let (a, b) = (rays[i], rays[(i + 1) % 6]);
            // With y down, clockwise on screen is a positive cross product.
            let (c, d) = (cross(a, b), a[0] * b[0] + a[1] * b[1]);
            if c <= 1e-4 * scale * scale {
                return None;
            }
            turn += c.atan2(d);
        }
        // Six positive sectors that go round exactly once.
        ((turn - std::f32::consts::TAU).abs() < 1e-3).then_some(Fan { inner, rays })
    }

    /// The sector holding `p` and `p`'s coordinates along its two rays.
    fn locate(&self, p: [f32; 2]) -> (usize, f32, f32) {
        let r = sub(p, self.inner);
        let mut best = (0, 0.0, 0.0, f32::NEG_INFINITY);
        for i in 0..6 {
            let (a, b) = (self.rays[i], self.rays[(i + 1) % 6]);
            let det = cross(a, b);
            let (alpha, beta) = (cross(r, b) / det, cross(a, r) / det);
            let worst = alpha.min(beta);
            if worst >= 0.0 {
                return (i, alpha, beta);
            }
            // Rounding can leave a point on a ray just outside both neighbours: take the closest.
            if worst > best.3 {
                best = (i, alpha, beta, worst);
            }
        }
        (best.0, best.1, best.2)
    }

    fn point(&self, sector: usize, alpha: f32, beta: f32) -> [f32; 2] {
        let (a, b) = (self.rays[sector], self.rays[(sector + 1) % 6]);
        [self.inner[0] + alpha * a[0] + beta * b[0], self.inner[1] + alpha * a[1] + beta * b[1]]
    }
}

/// A piecewise-affine map from one set of anchors (the template's) onto another (the face's).
#[derive(Clone, Copy, Debug)]
pub struct FanWarp {
    from: Fan,
    to: Fan,
}

impl FanWarp {
    /// None when either set of anchors is not a fan (see [`Anchors`]): crossed, folded, flat or
    /// not finite.
    pub fn new(from: &Anchors, to: &Anchors) -> Option<FanWarp> {
        Some(FanWarp { from: Fan::new(from)?, to: Fan::new(to)? })
    }

    /// Where template point `p` lands on the face.
    pub fn map(&self, p: [f32; 2]) -> [f32; 2] {
        let (i, a, b) = self.from.locate(p);
        self.to.point(i, a, b)
    }

    /// The template point that lands on face point `p`.
    pub fn unmap(&self, p: [f32; 2]) -> [f32; 2] {
        let (i, a, b) = self.to.locate(p);
        self.from.point(i, a, b)
    }
}

/// An RGBA image with straight (not premultiplied) alpha, `height * width * 4` bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct RgbaImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbaImage {
    /// A fully transparent image.
    pub fn transparent(width: u32, height: u32) -> RgbaImage {
        RgbaImage { width, height, data: vec![0; (width as usize) * (height as usize) * 4] }
    }

    /// Bilinear sample at `(x, y)` (pixel centres at half-integers): premultiplied RGB (0..255)
    /// and alpha (0..1). Beyond the edges the image is transparent, so a warped template fades
    /// out over one pixel instead of smearing its border.
    pub fn sample(&self, x: f32, y: f32) -> ([f32; 3], f32) {
        let (fx, fy) = (x - 0.5, y - 0.5);
        let (x0, y0) = (fx.floor(), fy.floor());
        let (wx, wy) = (fx - x0, fy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let (w, h) = (self.width as i64, self.height as i64);
        let mut rgb = [0.0f32; 3];
        let mut alpha = 0.0f32;
        for (dy, ky) in [(0, 1.0 - wy), (1, wy)] {
            for (dx, kx) in [(0, 1.0 - wx), (1, wx)] {
                let (px, py) = (x0 + dx, y0 + dy);
                let k = kx * ky;
                if px < 0 || py < 0 || px >= w || py >= h || k == 0.0 {
                    continue;
                }
                let i = ((py * w + px) * 4) as usize;
                let a = self.data[i + 3] as f32 / 255.0 * k;
                for (sum, &v) in rgb.iter_mut().zip(&self.data[i..i + 3]) {
                    *sum += v as f32 * a;
                }
                alpha += a;
            }
        }
        (rgb, alpha)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: Anchors = [[50.0, 0.0], [95.0, 20.0], [95.0, 70.0], [50.0, 100.0], [5.0, 70.0], [5.0, 20.0], [50.0, 45.0]];

    fn face() -> Anchors {
        // A rotated, sheared and unevenly stretched copy.
        TEMPLATE.map(|[x, y]| [200.0 + 1.3 * x - 0.4 * y + 0.002 * x * x, 80.0 + 0.3 * x + 1.6 * y])
    }

    #[test]
    fn anchors_land_on_their_partners_and_unmap_inverts_map() {
        let w = FanWarp::new(&TEMPLATE, &face()).unwrap();
        for (t, f) in TEMPLATE.iter().zip(face()) {
            let m = w.map(*t);
            assert!((m[0] - f[0]).abs() < 1e-3 && (m[1] - f[1]).abs() < 1e-3, "{t:?} -> {m:?}, not {f:?}");
        }
        for y in (-20..130).step_by(7) {
            for x in (-30..140).step_by(9) {
                let p = [x as f32 + 0.25, y as f32 + 0.5];
                let back = w.unmap(w.map(p));
                assert!((back[0] - p[0]).abs() < 1e-2 && (back[1] - p[1]).abs() < 1e-2, "{p:?} -> {back:?}");
            }
        }
    }

    #[test]
    fn the_map_is_continuous_across_sector_boundaries() {
        let w = FanWarp::new(&TEMPLATE, &face()).unwrap();
        for (i, &anchor) in TEMPLATE[..6].iter().enumerate() {
            // Points just either side of each ray map next to each other.
            let ray = sub(anchor, TEMPLATE[6]);
            let normal = [-ray[1], ray[0]];
            let n = normal[0].hypot(normal[1]);
            for k in [0.3f32, 1.0, 2.5] {
                let on = [TEMPLATE[6][0] + k * ray[0], TEMPLATE[6][1] + k * ray[1]];
                let a = w.map([on[0] + 1e-3 * normal[0] / n, on[1] + 1e-3 * normal[1] / n]);
                let b = w.map([on[0] - 1e-3 * normal[0] / n, on[1] - 1e-3 * normal[1] / n]);
                assert!((a[0] - b[0]).abs() < 0.02 && (a[1] - b[1]).abs() < 0.02, "ray {i} at {k}: {a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn crossed_flat_or_broken_anchors_are_refused() {
        let mut crossed = TEMPLATE;
        crossed.swap(1, 2);
        let mut counter_clockwise = TEMPLATE;
        counter_clockwise[..6].reverse();
        let mut outside = TEMPLATE;
        outside[6] = [200.0, 45.0];
        let mut nan = TEMPLATE;
        nan[3][1] = f32::NAN;
        for bad in [crossed, counter_clockwise, outside, nan, [[5.0, 5.0]; 7]] {
            assert!(FanWarp::new(&TEMPLATE, &bad).is_none(), "{bad:?}");
            assert!(FanWarp::new(&bad, &TEMPLATE).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn sampling_is_bilinear_on_premultiplied_colour_and_transparent_outside() {
        let mut img = RgbaImage::transparent(2, 1);
        img.data[..4].copy_from_slice(&[200, 100, 0, 255]);
        // Half-way between an opaque and a transparent pixel: half the alpha, the opaque colour.
        let (rgb, a) = img.sample(1.0, 0.5);
        assert!((a - 0.5).abs() < 1e-6 && (rgb[0] / a - 200.0).abs() < 1e-3 && (rgb[1] / a - 100.0).abs() < 1e-3);
        assert_eq!(img.sample(0.5, 0.5), ([200.0, 100.0, 0.0], 1.0));
        assert_eq!(img.sample(-3.0, 0.5).1, 0.0);
        assert_eq!(img.sample(0.5, 9.0).1, 0.0);
    }
}
