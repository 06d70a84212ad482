//! The confidence picture of one record: pLDDT along the chain on the left, with the bands
//! ColabFold and the AlphaFold DB use (< 50 very low, 50–70 low, 70–90 confident, > 90 very
//! high), and the predicted aligned error as a heat map with its colour bar on the right.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::fonts::{ensure_registered, FAMILY};
use crate::{ReportError, Result};

/// Width and height of every confidence PNG, in pixels.
pub const PNG_SIZE: (u32, u32) = (1200, 480);

/// PAE above this (Å) is drawn as the palest colour, as AlphaFold's plots clip at 30 Å.
pub const PAE_MAX: f32 = 30.0;

/// pLDDT bands (lower bound, colour) from the AlphaFold DB palette, lowest first.
pub const PLDDT_BANDS: [(f32, RGBColor); 4] = [
    (0.0, RGBColor(0xFF, 0x7D, 0x45)),
    (50.0, RGBColor(0xFF, 0xDB, 0x13)),
    (70.0, RGBColor(0x65, 0xCB, 0xF3)),
    (90.0, RGBColor(0x00, 0x53, 0xD6)),
];

/// What one picture shows. `plddt` is 0–100 per residue; `pae` is `[L, L]` row-major in Å
/// (row = aligned residue, column = scored residue), or `None` where the producer has none.
pub struct ConfidencePlot<'a> {
    pub title: &'a str,
    pub plddt: &'a [f32],
    pub pae: Option<&'a [f32]>,
    /// 0-based residue indices where a new chain starts (drawn as separators).
    pub chain_starts: &'a [usize],
}

/// The colour of one PAE value: dark green at 0 Å to white at [`PAE_MAX`], as AlphaFold's
/// "Greens_r" heat maps.
pub fn pae_color(v: f32) -> RGBColor {
    let t = if v.is_finite() {
        (v / PAE_MAX).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let lerp = |a: u8, b: u8| (a as f32 + (b as f32 - a as f32) * t).round() as u8;
    RGBColor(lerp(0x00, 0xFF), lerp(0x44, 0xFF), lerp(0x1B, 0xFF))
}

/// Writes the PNG of [`PNG_SIZE`] at `path`.
pub fn confidence_png(path: &Path, plot: &ConfidencePlot) -> Result<()> {
    let n = plot.plddt.len();
    if n == 0 {
        return Err(ReportError::Input(format!(
            "{}: no residues to plot",
            plot.title
        )));
    }
    if let Some(pae) = plot.pae {
        if pae.len() != n * n {
            return Err(ReportError::Input(format!(
                "{}: PAE has {} values, expected {n}×{n} for {n} residues",
                plot.title,
                pae.len()
            )));
        }
    }
    ensure_registered();
    let draw_err = |e: &dyn std::fmt::Display| ReportError::Draw {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let root = BitMapBackend::new(path, PNG_SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let (left, right) = root.split_horizontally(640);
    draw_plddt(&left, plot).map_err(|e| draw_err(&e))?;
    match plot.pae {
        Some(pae) => draw_pae(&right, plot, pae).map_err(|e| draw_err(&e))?,
        None => {
            right
                .draw_text(
                    "no PAE for this record",
                    &(FAMILY, 18).into_font().color(&BLACK.mix(0.6)),
                    (140, 230),
                )
                .map_err(|e| draw_err(&e))?;
        }
    }
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw_plddt(area: &DrawingArea<BitMapBackend, Shift>, plot: &ConfidencePlot) -> DrawResult {
    let n = plot.plddt.len() as f64;
    let mean = plot.plddt.iter().sum::<f32>() / plot.plddt.len() as f32;
    let caption = format!("{}: pLDDT (mean {mean:.1})", plot.title);
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .caption(caption, (FAMILY, 20))
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..n + 0.5, 0.0..100.0)?;
    for (k, &(low, color)) in PLDDT_BANDS.iter().enumerate() {
        let high = PLDDT_BANDS.get(k + 1).map_or(100.0, |b| b.0);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.5, low as f64), (n + 0.5, high as f64)],
            color.mix(0.28).filled(),
        )))?;
    }
    chart
        .configure_mesh()
        .x_desc("residue")
        .y_desc("pLDDT")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    for &s in plot.chain_starts.iter().filter(|&&s| s > 0) {
        let x = s as f64 + 0.5;
        chart.draw_series(DashedLineSeries::new(
            [(x, 0.0), (x, 100.0)],
            6,
            4,
            BLACK.mix(0.7).stroke_width(1),
        ))?;
    }
    let points = plot
        .plddt
        .iter()
        .enumerate()
        .map(|(i, &v)| ((i + 1) as f64, v.clamp(0.0, 100.0) as f64));
    chart.draw_series(LineSeries::new(points, BLACK.stroke_width(2)))?;
    Ok(())
}

fn draw_pae(
    area: &DrawingArea<BitMapBackend, Shift>,
    plot: &ConfidencePlot,
    pae: &[f32],
) -> DrawResult {
    let n = plot.plddt.len();
    let (map_area, bar_area) = area.split_horizontally(470);
    let mut chart = ChartBuilder::on(&map_area)
        .margin(14)
        .caption("predicted aligned error", (FAMILY, 20))
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..n as f64 + 0.5, n as f64 + 0.5..0.5)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("scored residue")
        .y_desc("aligned residue")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 15))
        .draw()?;
    // One pixel at a time: with L up to 2048 a rectangle per residue pair would be millions of
    // shapes, while the map is at most a few hundred pixels wide.
    let pixels = chart.plotting_area().strip_coord_spec();
    let (w, h) = pixels.dim_in_pixel();
    for py in 0..h {
        let i = (py as usize * n / h as usize).min(n - 1);
        for px in 0..w {
            let j = (px as usize * n / w as usize).min(n - 1);
            pixels.draw_pixel((px as i32, py as i32), &pae_color(pae[i * n + j]))?;
        }
    }
    for &s in plot.chain_starts.iter().filter(|&&s| s > 0) {
        let x = s as f64 + 0.5;
        let line = BLACK.mix(0.8).stroke_width(1);
        chart.draw_series(LineSeries::new([(x, 0.5), (x, n as f64 + 0.5)], line))?;
        chart.draw_series(LineSeries::new([(0.5, x), (n as f64 + 0.5, x)], line))?;
    }
    let mut bar = ChartBuilder::on(&bar_area)
        .margin_top(14)
        .margin_bottom(54)
        .margin_right(40)
        .caption("Å", (FAMILY, 16))
        .y_label_area_size(36)
        .build_cartesian_2d(0.0..1.0, 0.0..PAE_MAX as f64)?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FAMILY, 13))
        .draw()?;
    let steps = 60;
    bar.draw_series((0..steps).map(|k| {
        let lo = PAE_MAX as f64 * k as f64 / steps as f64;
        let hi = PAE_MAX as f64 * (k + 1) as f64 / steps as f64;
        Rectangle::new([(0.0, lo), (1.0, hi)], pae_color(lo as f32).filled())
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
        let o = ((y * img.0 + x) * 3) as usize;
        [img.2[o], img.2[o + 1], img.2[o + 2]]
    }

    #[test]
    fn png_has_the_size_the_bands_and_the_heat_map() {
        let n = 60;
        // Low confidence in the first half, very high in the second; PAE low near the
        // diagonal, high far from it.
        let plddt: Vec<f32> = (0..n)
            .map(|i| if i < n / 2 { 30.0 } else { 95.0 })
            .collect();
        let pae: Vec<f32> = (0..n * n)
            .map(|k| ((k / n) as f32 - (k % n) as f32).abs())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.png");
        confidence_png(
            &path,
            &ConfidencePlot {
                title: "r",
                plddt: &plddt,
                pae: Some(&pae),
                chain_starts: &[0],
            },
        )
        .unwrap();
        let img = decode(&path);
        assert_eq!((img.0, img.1), PNG_SIZE);
        let colours: std::collections::HashSet<[u8; 3]> =
            img.2.chunks(3).map(|c| [c[0], c[1], c[2]]).collect();
        assert!(
            colours.len() > 50,
            "only {} colours: blank picture?",
            colours.len()
        );
        // The PAE map: its diagonal is the darkest green, its far corner white-ish. Find the
        // map by its darkest pixel in the right half.
        let darkest = (640..img.0)
            .flat_map(|x| (0..img.1).map(move |y| (x, y)))
            .filter(|&(x, y)| {
                let p = pixel(&img, x, y);
                p[1] > p[0] && p[1] > p[2]
            })
            .min_by_key(|&(x, y)| {
                let p = pixel(&img, x, y);
                p[0] as u32 + p[1] as u32 + p[2] as u32
            })
            .expect("green pixels in the PAE half");
        assert_eq!(pixel(&img, darkest.0, darkest.1), [0x00, 0x44, 0x1B]);
        // Left half: the curve's band colours are blended into the background there.
        let orange_band = PLDDT_BANDS[0].1.mix(0.28);
        let blended = |c: u8| (c as f64 * 0.28 + 255.0 * 0.72).round() as i32;
        let (r, g, b) = orange_band.rgb();
        let want = [blended(r), blended(g), blended(b)];
        let found = (0..640).any(|x| {
            (0..img.1).any(|y| {
                let p = pixel(&img, x, y);
                (0..3).all(|c| (p[c] as i32 - want[c]).abs() <= 2)
            })
        });
        assert!(found, "no very-low band in the pLDDT panel");
    }

    #[test]
    fn pae_of_the_wrong_size_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let err = confidence_png(
            &dir.path().join("x.png"),
            &ConfidencePlot {
                title: "x",
                plddt: &[50.0; 4],
                pae: Some(&[1.0; 15]),
                chain_starts: &[],
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("15 values") && err.contains("4×4"), "{err}");
    }

    #[test]
    fn record_without_pae_still_draws_its_curve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.png");
        confidence_png(
            &path,
            &ConfidencePlot {
                title: "s",
                plddt: &[80.0, 85.0, 40.0],
                pae: None,
                chain_starts: &[],
            },
        )
        .unwrap();
        let img = decode(&path);
        assert_eq!((img.0, img.1), PNG_SIZE);
        let dark = img
            .2
            .chunks(3)
            .filter(|c| c.iter().all(|&v| v < 40))
            .count();
        assert!(
            dark > 200,
            "curve and labels should be drawn, {dark} dark pixels"
        );
    }

    proptest::proptest! {
        #[test]
        fn pae_colour_is_monotone_and_clipped(a in 0.0f32..60.0, b in 0.0f32..60.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            let sum = |c: RGBColor| c.0 as u32 + c.1 as u32 + c.2 as u32;
            proptest::prop_assert!(sum(pae_color(lo)) <= sum(pae_color(hi)));
            proptest::prop_assert_eq!(pae_color(hi.max(PAE_MAX)), RGBColor(255, 255, 255));
        }
    }
}
