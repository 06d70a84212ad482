//! One font for every label we draw. It is bundled (DejaVu Sans 2.37 from Debian's
//! `fonts-dejavu-core`; licence in `assets/DejaVuSans-LICENSE.txt`) so axes are labelled on
//! machines without system fonts, e.g. a slim container.

use std::sync::OnceLock;

static DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// The family name to use in plotters' text styles.
pub const FAMILY: &str = "sans-serif";

/// Registers the bundled font under [`FAMILY`] once per process; true when it is usable.
pub fn ensure_registered() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        plotters::style::register_font(FAMILY, plotters::style::FontStyle::Normal, DEJAVU_SANS)
            .is_ok()
    })
}
