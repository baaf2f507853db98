//! PNG copies of the SVG plots, rendered by resvg with the system's fonts.
//!
//! The SVG keeps its text as `<text>` elements, which any browser draws with its own fonts; a PNG
//! needs font files. They are read once from the system (Debian's `fonts-dejavu-core` provides
//! DejaVu Sans; `.ci/run` installs it). Without any, the PNGs are drawn without their text.

use resvg::tiny_skia::{Color, Pixmap, Transform};
use resvg::usvg::{fontdb, Options, Tree};
use std::sync::{Arc, OnceLock};

/// Pixels per SVG pixel: PNGs are drawn 1.5 times the SVG size, to stay sharp when zoomed.
const SCALE: f32 = 1.5;

/// Families tried, in order, for the SVG's generic `sans-serif`.
const SANS: [&str; 5] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
];

fn fonts() -> Arc<fontdb::Database> {
    static FONTS: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = fontdb::Database::new();
            db.load_system_fonts();
            let families: Vec<String> = db
                .faces()
                .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
                .collect();
            let sans = SANS
                .iter()
                .find(|s| families.iter().any(|f| f == *s))
                .map(|s| s.to_string())
                .or_else(|| families.first().cloned());
            if let Some(family) = sans {
                db.set_sans_serif_family(family);
            }
            Arc::new(db)
        })
        .clone()
}

/// Whether a font was found to draw the text of PNG plots.
pub fn system_fonts_found() -> bool {
    !fonts().is_empty()
}

/// Renders SVG text as PNG bytes on a white background.
pub fn png_from_svg(svg: &str) -> Result<Vec<u8>, String> {
    let options = Options {
        fontdb: fonts(),
        ..Options::default()
    };
    let tree = Tree::from_str(svg, &options).map_err(|e| e.to_string())?;
    let size = tree.size();
    let (w, h) = (
        (size.width() * SCALE).ceil() as u32,
        (size.height() * SCALE).ceil() as u32,
    );
    let mut pixmap = Pixmap::new(w, h).ok_or_else(|| format!("cannot make a {w}x{h} image"))?;
    pixmap.fill(Color::WHITE);
    resvg::render(
        &tree,
        Transform::from_scale(SCALE, SCALE),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().map_err(|e| e.to_string())
}
