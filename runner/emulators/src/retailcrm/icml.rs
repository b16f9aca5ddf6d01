//! Loading an ICML catalogue as a site's catalogue, as retailCRM does from the site's
//! `ymlUrl` (`loadFromYml`): each `<offer>` becomes an offer of the site, matched to an
//! existing one by `externalId` (`offer@id`), else by `xmlId`; offers of the site missing from
//! the file are deactivated; `productId` groups offers into products; `type="service"` makes
//! the product a service. Per-store stock is left as it is (the catalogue's `quantity` is not
//! a store's stock).

use indexmap::IndexMap;
use quick_xml::events::Event;
use quick_xml::Reader;
use serde_json::{json, Map, Value};

use super::model::{next, Failure, Offer};
use super::{EmulatorError, RetailcrmEmulator};

/// What loading a catalogue did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IcmlLoad {
    /// Offers created.
    pub created: usize,
    /// Offers updated.
    pub updated: usize,
    /// Offers of the site deactivated (not in the file).
    pub deactivated: usize,
    /// Categories in the file.
    pub categories: usize,
}

/// One `<offer>` as read.
#[derive(Debug, Default)]
struct IcmlOffer {
    id: String,
    product_id: String,
    service: bool,
    fields: Map<String, Value>,
}

fn bad(msg: impl Into<String>) -> EmulatorError {
    EmulatorError::Rejected(Failure::new(400, format!("ICML: {}", msg.into())))
}

fn attr(
    e: &quick_xml::events::BytesStart<'_>,
    name: &str,
) -> Result<Option<String>, EmulatorError> {
    for a in e.attributes() {
        let a = a.map_err(|e| bad(e.to_string()))?;
        if a.key.as_ref() == name.as_bytes() {
            let v = a.unescape_value().map_err(|e| bad(e.to_string()))?;
            return Ok(Some(v.into_owned()));
        }
    }
    Ok(None)
}

/// Reads the offers and the category ids of an ICML document.
fn parse(xml: &str) -> Result<(Vec<IcmlOffer>, Vec<String>), EmulatorError> {
    let mut reader = Reader::from_str(xml);
    let mut offers = Vec::new();
    let mut categories = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut current: Option<IcmlOffer> = None;
    let mut text = String::new();
    loop {
        match reader.read_event().map_err(|e| bad(e.to_string()))? {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if path.is_empty() && name != "yml_catalog" {
                    return Err(bad(format!("the root is <{name}>, not <yml_catalog>")));
                }
                match name.as_str() {
                    "offer" if path.last().map(String::as_str) == Some("offers") => {
                        let id = attr(&e, "id")?.ok_or_else(|| bad("an <offer> without id"))?;
                        current = Some(IcmlOffer {
                            product_id: attr(&e, "productId")?.unwrap_or_else(|| id.clone()),
                            service: attr(&e, "type")?.as_deref() == Some("service"),
                            id,
                            fields: Map::new(),
                        });
                    }
                    "category" => {
                        categories
                            .push(attr(&e, "id")?.ok_or_else(|| bad("a <category> without id"))?);
                    }
                    _ => {}
                }
                path.push(name);
                text.clear();
            }
            Event::Empty(e) if path.is_empty() => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                return Err(bad(format!("the root <{name}/> is empty")));
            }
            Event::Empty(_) => {}
            Event::Text(t) => {
                text.push_str(&t.decode().map_err(|e| bad(e.to_string()))?);
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| bad(e.to_string()))?;
                let ch = match name.as_ref() {
                    "amp" => "&",
                    "lt" => "<",
                    "gt" => ">",
                    "quot" => "\"",
                    "apos" => "'",
                    other => return Err(bad(format!("unknown entity &{other};"))),
                };
                text.push_str(ch);
            }
            Event::CData(c) => text.push_str(&String::from_utf8_lossy(&c)),
            Event::End(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                path.pop();
                if name == "offer" && path.last().map(String::as_str) == Some("offers") {
                    offers.extend(current.take());
                } else if let Some(o) = current.as_mut() {
                    if path.last().map(String::as_str) == Some("offer") {
                        o.fields
                            .entry(name)
                            .or_insert_with(|| Value::String(text.trim().to_string()));
                    }
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !path.is_empty() {
        return Err(bad("the document ends inside an element"));
    }
    Ok((offers, categories))
}

fn field<'a>(o: &'a IcmlOffer, name: &str) -> Option<&'a str> {
    o.fields.get(name).and_then(Value::as_str)
}

impl RetailcrmEmulator {
    /// Loads an ICML document as the catalogue of `site`.
    pub fn load_icml(&self, site: &str, xml: &str) -> Result<IcmlLoad, EmulatorError> {
        let (offers, categories) = parse(xml)?;
        let mut inner = self.shared.lock();
        let st = &mut inner.state;
        if !st.references.sites.contains_key(site) {
            return Err(EmulatorError::NotFound(format!("site {site}")));
        }
        let mut report = IcmlLoad {
            categories: categories.len(),
            ..IcmlLoad::default()
        };
        let mut products: IndexMap<String, i64> = IndexMap::new();
        for o in st.offers.iter().filter(|o| o.site == site) {
            if let (Some(x), Some(id)) = (
                o.product.get("externalId").and_then(Value::as_str),
                o.product.get("id").and_then(Value::as_i64),
            ) {
                products.insert(x.to_string(), id);
            }
        }
        let mut seen = Vec::new();
        for io in &offers {
            let xml_id = field(io, "xmlId").unwrap_or(&io.id).to_string();
            let pid = match products.get(&io.product_id) {
                Some(id) => *id,
                None => {
                    let id = next(&mut st.seq.product);
                    products.insert(io.product_id.clone(), id);
                    id
                }
            };
            let name = field(io, "name").unwrap_or_default().to_string();
            let product = json!({
                "id": pid,
                "externalId": io.product_id,
                "name": field(io, "productName").unwrap_or(&name),
                "type": if io.service { "service" } else { "product" },
                "active": true,
            });
            let price = field(io, "price").and_then(|p| p.parse::<f64>().ok());
            let idx = st
                .offers
                .iter()
                .position(|o| o.site == site && o.external_id.as_deref() == Some(&io.id))
                .or_else(|| {
                    st.offers
                        .iter()
                        .position(|o| o.site == site && o.xml_id.as_deref() == Some(&xml_id))
                });
            let idx = match idx {
                Some(i) => {
                    report.updated += 1;
                    i
                }
                None => {
                    report.created += 1;
                    let id = next(&mut st.seq.offer);
                    st.offers.push(Offer {
                        id,
                        site: site.to_string(),
                        ..Offer::default()
                    });
                    st.offers.len() - 1
                }
            };
            let offer = &mut st.offers[idx];
            offer.external_id = Some(io.id.clone());
            offer.xml_id = Some(xml_id);
            offer.name = name;
            offer.price = price.unwrap_or(0.0);
            offer.purchase_price = field(io, "purchasePrice")
                .and_then(|p| p.parse().ok())
                .or(offer.purchase_price);
            offer.vat_rate = field(io, "vatRate").map(str::to_string);
            offer.active = field(io, "productActivity") != Some("N");
            offer.product = product;
            seen.push(offer.id);
        }
        for o in st.offers.iter_mut().filter(|o| o.site == site) {
            if !seen.contains(&o.id) && o.active {
                o.active = false;
                report.deactivated += 1;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_offers_and_refuses_what_is_not_icml() {
        let (offers, cats) = parse(
            "<?xml version=\"1.0\"?><yml_catalog><shop><categories><category id=\"c1\">A &amp; B</category></categories>\
             <offers><offer id=\"p#v\" productId=\"p\" type=\"service\"><xmlId>p#v</xmlId><name>X &lt;1&gt;</name>\
             <price>10.50</price></offer></offers></shop></yml_catalog>",
        )
        .expect("parse");
        assert_eq!(cats, ["c1"]);
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].id, "p#v");
        assert!(offers[0].service);
        assert_eq!(field(&offers[0], "name"), Some("X <1>"));
        assert_eq!(field(&offers[0], "price"), Some("10.50"));
        assert!(parse("<catalog/>").is_err());
        assert!(parse("<yml_catalog><shop>").is_err());
    }
}
