//! Layer compression: detected from the stream's magic bytes (never trusted from a media type alone),
//! and the matching streaming decoder.

use std::io::{self, BufRead, Read};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (possibly multi-member).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Detects the compression from the first bytes of a blob.
    pub fn detect(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Self::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Self::Zstd
        } else {
            Self::None
        }
    }

    /// The OCI layer media type for a layer with this compression.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Self::None => "application/vnd.oci.image.layer.v1.tar",
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Self::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Wraps `reader` in the decoder its first bytes call for.
pub fn decompress<'a, R: BufRead + 'a>(mut reader: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let kind = Compression::detect(reader.fill_buf()?);
    let decoded: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
    };
    Ok((kind, decoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_and_zstd_round_trip() {
        let data = b"layer bytes".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).expect("gzip");
        let gz = gz.finish().expect("gzip finish");
        let zs = zstd::encode_all(&data[..], 3).expect("zstd");
        for (blob, kind) in [(gz, Compression::Gzip), (zs, Compression::Zstd), (data.clone(), Compression::None)] {
            let (k, mut r) = decompress(&blob[..]).expect("decoder");
            assert_eq!(k, kind);
            let mut out = Vec::new();
            r.read_to_end(&mut out).expect("decode");
            assert_eq!(out, data);
        }
    }
}
