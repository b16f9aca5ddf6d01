//! The entity types the emulator knows, and what is special about each.

/// What the emulator knows about one entity type.
#[derive(Debug)]
pub struct Kind {
    /// The type keyword, as in `meta.type` and the URL (`customerorder`).
    pub name: &'static str,
    /// The UI path used in `uuidHref` (`#<ui>/edit?id=`); `None` means no `uuidHref`.
    pub ui: Option<&'static str>,
    /// A document (has `name` numbering, `moment`, `applicable`, `sum`…).
    pub document: bool,
    /// The meta type of its positions, for documents that have positions.
    pub positions: Option<&'static str>,
    /// Accepts `syncId`.
    pub sync_id: bool,
    /// Can be created through the API (prepayments are created by the POS only).
    pub creatable: bool,
    /// Fields required on create (error 3000 when missing).
    pub required: &'static [&'static str],
    /// Nested collections replaced as a whole on PUT, with the meta type of their rows.
    pub nested: &'static [(&'static str, &'static str)],
    /// Part of the assortment (product, variant, service, bundle).
    pub assortment: bool,
    /// Holds stock (product, variant).
    pub stocked: bool,
    /// Has a `created` timestamp.
    pub created: bool,
    /// Has `metadata/states`.
    pub states: bool,
}

const fn kind(name: &'static str) -> Kind {
    Kind {
        name,
        ui: Some(name),
        document: false,
        positions: None,
        sync_id: false,
        creatable: true,
        required: &[],
        nested: &[],
        assortment: false,
        stocked: false,
        created: false,
        states: false,
    }
}

const fn document(name: &'static str, positions: Option<&'static str>) -> Kind {
    Kind {
        document: true,
        positions,
        sync_id: true,
        created: true,
        states: true,
        ..kind(name)
    }
}

/// Positions collection of a document, as `(field, meta type)`.
const fn positions(ty: &'static str) -> &'static [(&'static str, &'static str)] {
    match ty.as_bytes() {
        b"customerorderposition" => &[("positions", "customerorderposition")],
        b"demandposition" => &[("positions", "demandposition")],
        b"moveposition" => &[("positions", "moveposition")],
        b"salesreturnposition" => &[("positions", "salesreturnposition")],
        b"prepaymentposition" => &[("positions", "prepaymentposition")],
        b"enterposition" => &[("positions", "enterposition")],
        _ => &[],
    }
}

/// Every type the emulator serves.
pub static KINDS: &[Kind] = &[
    Kind {
        required: &["organization", "agent"],
        nested: positions("customerorderposition"),
        ..document("customerorder", Some("customerorderposition"))
    },
    Kind {
        required: &["organization", "agent", "store"],
        nested: positions("demandposition"),
        ..document("demand", Some("demandposition"))
    },
    Kind {
        required: &["organization", "sourceStore", "targetStore"],
        nested: positions("moveposition"),
        ..document("move", Some("moveposition"))
    },
    Kind {
        required: &["organization", "store", "agent"],
        nested: positions("salesreturnposition"),
        ..document("salesreturn", Some("salesreturnposition"))
    },
    Kind {
        required: &["organization", "store", "agent"],
        nested: positions("demandposition"),
        ..document("retaildemand", Some("demandposition"))
    },
    Kind {
        required: &["organization", "store"],
        nested: positions("enterposition"),
        ..document("enter", Some("enterposition"))
    },
    Kind {
        required: &["organization", "agent"],
        ..document("paymentin", None)
    },
    Kind {
        required: &["organization", "agent"],
        ..document("cashin", None)
    },
    Kind {
        creatable: false,
        nested: positions("prepaymentposition"),
        ..document("prepayment", Some("prepaymentposition"))
    },
    Kind {
        ui: Some("company"),
        sync_id: true,
        created: true,
        states: true,
        required: &["name"],
        nested: &[("accounts", "account"), ("contactpersons", "contactperson")],
        ..kind("counterparty")
    },
    Kind {
        ui: Some("mycompany"),
        sync_id: true,
        created: true,
        required: &["name"],
        nested: &[("accounts", "account")],
        ..kind("organization")
    },
    Kind {
        ui: Some("warehouse"),
        required: &["name"],
        ..kind("store")
    },
    Kind {
        ui: Some("good"),
        sync_id: true,
        required: &["name"],
        assortment: true,
        stocked: true,
        ..kind("product")
    },
    Kind {
        ui: Some("feature"),
        sync_id: true,
        required: &["product", "characteristics"],
        assortment: true,
        stocked: true,
        ..kind("variant")
    },
    Kind {
        ui: Some("good"),
        sync_id: true,
        required: &["name"],
        assortment: true,
        ..kind("service")
    },
    Kind {
        ui: Some("good"),
        sync_id: true,
        required: &["name"],
        assortment: true,
        ..kind("bundle")
    },
    Kind {
        ui: Some("good"),
        required: &["name"],
        ..kind("productfolder")
    },
    Kind {
        created: true,
        required: &["lastName"],
        ..kind("employee")
    },
    Kind {
        required: &["name"],
        ..kind("currency")
    },
    Kind {
        required: &["name"],
        ..kind("saleschannel")
    },
    Kind {
        required: &["name"],
        ..kind("project")
    },
    Kind {
        ui: None,
        required: &["url", "entityType", "action"],
        ..kind("webhook")
    },
];

/// Looks a type up by its keyword.
pub fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The type whose `metadata/attributes` hold this type's custom fields: product, service,
/// bundle and variant share the product's.
pub fn attribute_owner(name: &str) -> &str {
    match name {
        "service" | "bundle" | "variant" => "product",
        other => other,
    }
}

/// Fields every entity type can be filtered by.
const FILTER_COMMON: &[&str] = &[
    "id",
    "accountId",
    "owner",
    "shared",
    "group",
    "updated",
    "updatedBy",
    "name",
    "description",
    "externalCode",
    "isDeleted",
];

/// Fields every document type can be filtered by.
const FILTER_DOCUMENT: &[&str] = &[
    "moment",
    "created",
    "applicable",
    "deleted",
    "printed",
    "published",
    "sum",
    "syncId",
    "organization",
    "organizationAccount",
    "agent",
    "agentAccount",
    "state",
    "state.name",
    "project",
    "contract",
    "salesChannel",
    "assortment",
];

/// Fields of the catalogue (products, services, bundles, variants, the assortment).
const FILTER_GOODS: &[&str] = &[
    "code",
    "archived",
    "article",
    "barcode",
    "pathName",
    "productFolder",
    "supplier",
    "uom",
    "weight",
    "volume",
    "weighed",
    "isSerialTrackable",
    "trackingType",
];

/// The fields a list of `ty` can be filtered by (besides custom fields, which are filtered
/// by their metadata href), after the "Фильтрация" columns of the API documentation. Any
/// other field is refused with error 1034.
pub fn filterable(ty: &str, field: &str) -> bool {
    if field.starts_with("http") && field.contains("/metadata/attributes/") {
        return true;
    }
    if FILTER_COMMON.contains(&field) {
        return true;
    }
    // Every type with a `syncId` can be looked up by it.
    if field == "syncId" && super::fields::fields(ty).is_some_and(|f| f.contains(&"syncId")) {
        return true;
    }
    let own: &[&str] = match ty {
        "counterparty" => &[
            "code",
            "archived",
            "created",
            "inn",
            "kpp",
            "ogrn",
            "okpo",
            "phone",
            "fax",
            "email",
            "tags",
            "companyType",
            "legalTitle",
            "legalAddress",
            "actualAddress",
            "discountCardNumber",
            "state",
            "state.name",
            "accounts.accountNumber",
            "accounts.accountnumber",
        ],
        "organization" => &[
            "code",
            "archived",
            "created",
            "inn",
            "kpp",
            "ogrn",
            "okpo",
            "phone",
            "fax",
            "email",
            "legalTitle",
            "legalAddress",
            "actualAddress",
            "accounts.accountNumber",
            "accounts.accountnumber",
        ],
        "employee" => &[
            "code",
            "archived",
            "created",
            "email",
            "phone",
            "uid",
            "firstName",
            "middleName",
            "lastName",
            "inn",
            "position",
        ],
        "store" => &["code", "archived", "address", "parent", "pathName"],
        "productfolder" => &["code", "archived", "pathName", "productFolder"],
        "product" | "service" | "bundle" => FILTER_GOODS,
        "variant" => &["code", "archived", "product", "barcode"],
        "assortment" => &[
            "code",
            "archived",
            "article",
            "barcode",
            "pathName",
            "productFolder",
            "supplier",
            "type",
            "stockStore",
            "stockMode",
            "quantityMode",
            "stockMoment",
            "product",
        ],
        "currency" => &["code", "isoCode", "archived", "default"],
        "saleschannel" | "project" => &["code", "archived", "type"],
        "webhook" => &["entityType", "action", "url", "enabled"],
        "customentity" => &["code"],
        "customerorder" => &[
            "deliveryPlannedMoment",
            "store",
            "vatEnabled",
            "vatIncluded",
        ],
        "demand" | "retaildemand" | "salesreturn" => &["store", "customerOrder", "demand"],
        "move" => &["sourceStore", "targetStore", "store", "agentStore"],
        "enter" => &["store", "overhead"],
        "paymentin" | "cashin" => &["operations"],
        _ => &[],
    };
    if own.contains(&field) {
        return true;
    }
    find(ty).is_some_and(|k| k.document) && FILTER_DOCUMENT.contains(&field)
}

/// Document types that move stock when posted, with how: `(type, store field, sign)`.
pub static STOCK_MOVES: &[(&str, &str, f64)] = &[
    ("demand", "store", -1.0),
    ("retaildemand", "store", -1.0),
    ("salesreturn", "store", 1.0),
    ("enter", "store", 1.0),
    ("move", "sourceStore", -1.0),
    ("move", "targetStore", 1.0),
];

/// Entity types a webhook may subscribe to.
pub fn webhook_subscribable(name: &str) -> bool {
    find(name).is_some_and(|k| k.name != "webhook") || name == "customentity"
}
