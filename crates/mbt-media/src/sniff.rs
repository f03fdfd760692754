//! What a media file is, from its first bytes, so a file the decoders do not take is refused
//! naming what it is ("WAV encoding MS ADPCM (format tag 0x0002)", "an MP4/M4A file") instead
//! of with the decoder's own complaint about the part it tripped on ("Ill-formed WAVE file:
//! inconsistent fmt chunk" is what hound says of an ADPCM file).
//!
//! Only identification lives here: no decoding, nothing allocated, every read bounds-checked
//! (the bytes come from outside). The tables name what users meet in practice (old game
//! sounds, phone recordings, exports from Audacity, ffmpeg and phones); anything else is
//! still refused, by tag number or by the decoder's message.

/// `WAVE_FORMAT_EXTENSIBLE`: the real encoding is the first two bytes of the sub-format GUID.
pub(crate) const TAG_EXTENSIBLE: u16 = 0xFFFE;
pub(crate) const TAG_PCM: u16 = 0x0001;
pub(crate) const TAG_FLOAT: u16 = 0x0003;
pub(crate) const TAG_ALAW: u16 = 0x0006;
pub(crate) const TAG_MULAW: u16 = 0x0007;

/// A WAV file's `fmt ` chunk, as far as choosing a decoder needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WavFmt {
    /// The encoding: the format tag, or the sub-format's for `WAVE_FORMAT_EXTENSIBLE`.
    pub tag: u16,
    pub extensible: bool,
    pub bits: u16,
}

/// The `fmt ` chunk of a little-endian RIFF/WAVE file, found by walking the chunks (it need
/// not be the first); None if the bytes are not RIFF/WAVE or hold no complete `fmt ` chunk.
pub(crate) fn wav_fmt(b: &[u8]) -> Option<WavFmt> {
    if b.get(0..4)? != b"RIFF" || b.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut i = 12usize;
    while let Some(head) = b.get(i..i + 8) {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let body = i + 8;
        if &head[..4] == b"fmt " {
            let f = b.get(body..body.checked_add(len)?)?;
            let u16_at = |o: usize| f.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
            let tag = u16_at(0)?;
            let bits = u16_at(14)?;
            if tag == TAG_EXTENSIBLE {
                // cbSize (16), valid bits (18), channel mask (20), sub-format GUID (24).
                return Some(WavFmt {
                    tag: u16_at(24)?,
                    extensible: true,
                    bits,
                });
            }
            return Some(WavFmt {
                tag,
                extensible: false,
                bits,
            });
        }
        // Chunks are padded to an even length.
        i = body.checked_add(len)?.checked_add(len & 1)?;
    }
    None
}

/// A copy of a RIFF/WAVE file whose `data` chunk ends in a partial sample frame (a length
/// that is not a multiple of the `fmt ` chunk's block align: old game sounds such as Scratch's
/// `Rooster.wav` have 34,221 bytes of 16-bit mono), with that length cut down to whole frames;
/// None when the file is not such a file. hound refuses the file outright ("data chunk length
/// is not a multiple of sample size"); sox, ffmpeg and symphonia drop the partial frame, and so
/// does this reader.
pub(crate) fn trim_partial_frame(b: &[u8]) -> Option<Vec<u8>> {
    if b.get(0..4)? != b"RIFF" || b.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut align = None;
    let mut i = 12usize;
    while let Some(head) = b.get(i..i + 8) {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let body = i + 8;
        if &head[..4] == b"fmt " {
            let f = b.get(body..body.checked_add(len)?)?;
            align = Some(u16::from_le_bytes([*f.get(12)?, *f.get(13)?]) as usize);
        } else if &head[..4] == b"data" {
            let align = align.filter(|&a| a > 0)?;
            let whole = len - len % align;
            if whole == len {
                return None;
            }
            let mut out = b.to_vec();
            out[i + 4..i + 8].copy_from_slice(&(whole as u32).to_le_bytes());
            return Some(out);
        }
        i = body.checked_add(len)?.checked_add(len & 1)?;
    }
    None
}

/// The name of a WAV format tag (the registered `WAVE_FORMAT_*` values people meet).
pub(crate) fn wav_tag_name(tag: u16) -> &'static str {
    match tag {
        TAG_PCM => "integer PCM",
        0x0002 => "MS ADPCM",
        TAG_FLOAT => "IEEE float",
        TAG_ALAW => "A-law (G.711)",
        TAG_MULAW => "µ-law (G.711)",
        0x0010 => "OKI ADPCM",
        0x0011 => "IMA ADPCM",
        0x0014 => "G.723 ADPCM",
        0x0020 => "Yamaha ADPCM",
        0x0022 => "DSP Group TrueSpeech",
        0x0031 => "GSM 6.10",
        0x0040 => "G.721 ADPCM",
        0x0042 => "G.723.1",
        0x0045 => "G.726 ADPCM",
        0x0050 => "MPEG Layer I/II",
        0x0055 => "MPEG Layer III (MP3)",
        0x0064 => "G.726 ADPCM (APICOM)",
        0x0065 => "G.722 ADPCM",
        0x00FF | 0x1600 | 0x1610 => "AAC",
        0x0160..=0x0163 => "Windows Media Audio",
        0x0200 => "Creative ADPCM",
        0x2000 => "AC-3",
        0x2001 => "DTS",
        0xF1AC => "FLAC",
        _ => "unknown",
    }
}

/// What a file that is not one of the sound formats we decode is, from its magic bytes; None
/// when the bytes are not recognised (or are one we decode: WAV, Ogg, MP3, FLAC).
pub(crate) fn other_container(b: &[u8]) -> Option<&'static str> {
    let at = |o: usize, magic: &[u8]| b.get(o..o + magic.len()) == Some(magic);
    let kind = if at(4, b"ftyp") {
        "an MP4/M4A (ISO base media) file"
    } else if at(0, b"FORM") && at(8, b"AIFF") {
        "an AIFF file"
    } else if at(0, b"FORM") && at(8, b"AIFC") {
        "an AIFF-C file"
    } else if at(0, b".snd") {
        "a Sun/NeXT AU file"
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        "a Matroska/WebM file"
    } else if at(0, &[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11]) {
        "an ASF file (WMA/WMV)"
    } else if at(0, b"#!AMR") {
        "an AMR speech file"
    } else if at(0, b"caff") {
        "a Core Audio (CAF) file"
    } else if at(0, b"wvpk") {
        "a WavPack file"
    } else if at(0, b"MAC ") {
        "a Monkey's Audio file"
    } else if at(0, b"MThd") {
        "a MIDI file (notes, not sound)"
    } else if at(0, b"RIFF") && at(8, b"AVI ") {
        "an AVI video"
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        "a WebP image"
    } else if at(0, b"\x89PNG") {
        "a PNG image"
    } else if at(0, &[0xFF, 0xD8, 0xFF]) {
        "a JPEG image"
    } else if at(0, b"YUV4MPEG2") {
        "a Y4M video"
    } else if is_adts(b) {
        "an AAC (ADTS) stream"
    } else {
        return None;
    };
    Some(kind)
}

/// What `b` is, for a refusal: [`other_container`], or one of the sound formats we decode
/// (an Ogg file names its codec).
pub(crate) fn describe(b: &[u8]) -> Option<String> {
    if let Some(codec) = ogg_codec(b) {
        return Some(format!("an Ogg file holding {codec}"));
    }
    if b.starts_with(b"fLaC") {
        return Some("a FLAC file".into());
    }
    if let Some(kind) = other_container(b) {
        return Some(kind.into());
    }
    if b.starts_with(b"ID3") || (b.len() > 1 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0) {
        return Some("an MP3 file".into());
    }
    None
}

/// An AAC ADTS frame header: the 12-bit sync word with the layer bits 00 (MP3 frames have
/// the same sync but a non-zero layer).
pub(crate) fn is_adts(b: &[u8]) -> bool {
    b.len() > 1 && b[0] == 0xFF && b[1] & 0xF6 == 0xF0
}

/// The codec of an Ogg file's first logical stream, from its first packet: Ogg is a
/// container, and symphonia is built with the Vorbis and FLAC decoders only.
pub(crate) fn ogg_codec(b: &[u8]) -> Option<&'static str> {
    if b.get(0..4)? != b"OggS" {
        return None;
    }
    // Page header: 27 bytes, then `page_segments` lacing values, then the packet.
    let segments = *b.get(26)? as usize;
    let packet = b.get(27 + segments..)?;
    let starts = |magic: &[u8]| packet.starts_with(magic);
    Some(if starts(b"\x01vorbis") {
        "Vorbis"
    } else if starts(b"\x7fFLAC") {
        "FLAC"
    } else if starts(b"OpusHead") {
        "Opus"
    } else if starts(b"Speex   ") {
        "Speex"
    } else if starts(b"\x80theora") {
        "Theora video"
    } else {
        "an unknown codec"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fmt_is_found_after_other_chunks_and_truncation_is_none() {
        let mut b = b"RIFF\0\0\0\0WAVE".to_vec();
        b.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd length, padded
        b.extend_from_slice(b"fmt \x10\0\0\0");
        b.extend_from_slice(&[0x02, 0, 1, 0, 0x40, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0]);
        assert_eq!(
            wav_fmt(&b),
            Some(WavFmt {
                tag: 2,
                extensible: false,
                bits: 4
            })
        );
        assert_eq!(wav_fmt(&b[..b.len() - 1]), None);
        // A chunk length near u32::MAX must not overflow or panic.
        let mut huge = b"RIFF\0\0\0\0WAVE".to_vec();
        huge.extend_from_slice(b"JUNK\xff\xff\xff\xff");
        assert_eq!(wav_fmt(&huge), None);
    }

    #[test]
    fn mp3_frames_are_not_taken_for_adts() {
        assert!(is_adts(&[0xFF, 0xF1, 0x50]));
        assert!(!is_adts(&[0xFF, 0xFB, 0x90])); // MPEG-1 Layer III
        assert!(!is_adts(&[0xFF]));
    }
}
