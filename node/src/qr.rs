//! The TOTP enrolment URI as a QR code: a greyscale PNG, base64, for clients to show as is.
//!
//! `qrcode` builds the module matrix (error correction M, no image features) and `png` writes
//! it: 4 pixels per module with the 4-module quiet zone the standard asks for.

use base64::Engine;

use crate::error::ApiError;

/// Pixels per QR module.
const SCALE: usize = 4;
/// Modules of white border (ISO/IEC 18004 quiet zone).
const QUIET: usize = 4;

/// The QR code of `text` as a PNG, standard base64.
pub fn png_base64(text: &str) -> Result<String, ApiError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| ApiError::Internal)?;
    let w = code.width();
    let colors = code.to_colors();
    let size = (w + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; size * size];
    for (i, c) in colors.iter().enumerate() {
        if *c != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % w + QUIET, i / w + QUIET);
        for dy in 0..SCALE {
            let row = (my * SCALE + dy) * size;
            pixels[row + mx * SCALE..row + mx * SCALE + SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size as u32, size as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|_| ApiError::Internal)?;
        writer.write_image_data(&pixels).map_err(|_| ApiError::Internal)?;
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}
