//! What is read of SAML XML before any signature is checked: the bytes
//! refused outright (declarations), and a scan of the raw response's shape
//! (quick-xml, which expands no entities) that the checks after the
//! signature compare with what the signature covers.

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::SamlError;

pub const PROTOCOL_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:protocol";
pub const ASSERTION_NS: &[u8] = b"urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG_NS: &[u8] = b"http://www.w3.org/2000/09/xmldsig#";

/// DOCTYPE and ENTITY declarations are refused before anything parses the
/// bytes (XXE, entity expansion): SAML never needs them. So are documents
/// in another encoding than UTF-8 (NUL bytes: UTF-16 or UTF-32; an
/// `encoding` other than UTF-8), where a declaration would not be spelled
/// in these bytes.
pub fn refuse_declarations(bytes: &[u8]) -> Result<(), SamlError> {
    let found = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    if found(b"!DOCTYPE") || found(b"!ENTITY") {
        return Err(SamlError::Declaration);
    }
    if bytes.contains(&0) {
        return Err(SamlError::Malformed("not UTF-8 (NUL bytes)".into()));
    }
    let head = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if head.starts_with(b"<?xml")
        && let Some(end) = head.windows(2).position(|w| w == b"?>")
        && let Some(at) = head[..end].windows(8).position(|w| w == b"encoding")
    {
        let value: Vec<u8> = head[at + 8..end]
            .iter()
            .copied()
            .skip_while(|b| b.is_ascii_whitespace() || *b == b'=' || *b == b'"' || *b == b'\'')
            .take_while(|b| *b != b'"' && *b != b'\'')
            .collect();
        if !value.eq_ignore_ascii_case(b"UTF-8") {
            return Err(SamlError::Malformed(format!("encoding {:?}", String::from_utf8_lossy(&value))));
        }
    }
    Ok(())
}

/// The raw response as sent, unverified.
#[derive(Debug, Default)]
pub struct Shape {
    /// `<samlp:Response>` is the root.
    pub is_response: bool,
    pub destination: Option<String>,
    pub in_response_to: Option<String>,
    /// The `Value` of the root's `Status/StatusCode`.
    pub status: Option<String>,
    /// `saml:Assertion` elements anywhere in the document.
    pub assertions: usize,
    pub encrypted_assertions: usize,
    pub signatures: usize,
}

/// Scans `xml`: its root, and how many assertions and signatures it holds.
pub fn scan(xml: &str) -> Result<Shape, SamlError> {
    let mut reader = NsReader::from_str(xml);
    let mut shape = Shape::default();
    // Local names of the open elements, to find the root's Status/StatusCode.
    let mut path: Vec<Vec<u8>> = Vec::new();
    loop {
        let (namespace, event) =
            reader.read_resolved_event().map_err(|e| SamlError::Malformed(format!("not XML: {e}")))?;
        let namespace = match namespace {
            ResolveResult::Bound(ns) => ns.as_ref().to_vec(),
            _ => Vec::new(),
        };
        match event {
            Event::Start(element) => {
                look_at(&mut shape, &path, &namespace, &element)?;
                path.push(element.local_name().as_ref().to_vec());
            }
            Event::Empty(element) => look_at(&mut shape, &path, &namespace, &element)?,
            Event::End(_) => {
                path.pop();
            }
            Event::DocType(_) => return Err(SamlError::Declaration),
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(shape)
}

fn look_at(
    shape: &mut Shape,
    path: &[Vec<u8>],
    namespace: &[u8],
    element: &BytesStart<'_>,
) -> Result<(), SamlError> {
    let local = element.local_name();
    let local = local.as_ref();
    let attribute = |name: &[u8]| -> Result<Option<String>, SamlError> {
        for attribute in element.attributes() {
            let attribute = attribute.map_err(|e| SamlError::Malformed(format!("an attribute: {e}")))?;
            if attribute.key.as_ref() == name {
                let value = attribute
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map_err(|e| SamlError::Malformed(format!("an attribute: {e}")))?;
                return Ok(Some(value.into_owned()));
            }
        }
        Ok(None)
    };
    if path.is_empty() {
        shape.is_response = namespace == PROTOCOL_NS && local == b"Response";
        shape.destination = attribute(b"Destination")?;
        shape.in_response_to = attribute(b"InResponseTo")?;
    }
    if namespace == PROTOCOL_NS && local == b"StatusCode" && path.len() == 2 && path[1] == b"Status" {
        shape.status = attribute(b"Value")?;
    }
    match (namespace, local) {
        (ASSERTION_NS, b"Assertion") => shape.assertions += 1,
        (ASSERTION_NS, b"EncryptedAssertion") => shape.encrypted_assertions += 1,
        (DSIG_NS, b"Signature") => shape.signatures += 1,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_are_refused_in_any_case() {
        assert!(refuse_declarations(b"<samlp:Response/>").is_ok());
        for bad in
            [&b"<!DOCTYPE r [<!ENTITY x 'y'>]><r/>"[..], b"<!doctype r><r/>", b"<r><!EnTiTy x 'y'></r>"]
        {
            assert!(matches!(refuse_declarations(bad), Err(SamlError::Declaration)));
        }
        assert!(refuse_declarations(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><r/>").is_ok());
        // UTF-7 spells `<` as `+ADw-`; UTF-16 has NUL bytes.
        assert!(refuse_declarations(b"<?xml version='1.0' encoding='UTF-7'?><r/>").is_err());
        assert!(refuse_declarations(b"<\0r\0/\0>\0").is_err());
    }

    #[test]
    fn the_scan_counts_assertions_anywhere_and_reads_the_root() {
        let xml = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" Destination="https://sp/acs" InResponseTo="id-1">
            <samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>
            <samlp:Extensions><saml:Assertion ID="a"/></samlp:Extensions>
            <saml:Assertion ID="b"><x:Signature xmlns:x="http://www.w3.org/2000/09/xmldsig#"/></saml:Assertion>
        </samlp:Response>"#;
        let shape = scan(xml).unwrap();
        assert!(shape.is_response);
        assert_eq!(shape.destination.as_deref(), Some("https://sp/acs"));
        assert_eq!(shape.in_response_to.as_deref(), Some("id-1"));
        assert_eq!(shape.status.as_deref(), Some("urn:oasis:names:tc:SAML:2.0:status:Success"));
        assert_eq!((shape.assertions, shape.signatures), (2, 1));
    }
}
