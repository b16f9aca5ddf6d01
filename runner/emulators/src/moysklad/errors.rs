//! МойСклад error bodies: `{"errors":[{"error", "code", "parameter", "moreInfo", …}]}`.
//!
//! Texts and codes follow the official error table (`md/_errors.md` of the API docs); the HTTP
//! status for each code follows `md/_general.md` (400 format errors, 404 missing, 409 in use,
//! 412 validation, 413 too large, 429 limits).

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

/// Where `moreInfo` links point to, as МойСклад writes them.
const MORE_INFO: &str = "https://dev.moysklad.ru/doc/api/remap/1.2/#error_";

/// One failed request: an HTTP status and the `errors[]` it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct MsError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// The error objects, as they go into `errors[]`.
    pub errors: Vec<Value>,
}

impl MsError {
    /// An error with one error object.
    pub fn new(status: StatusCode, code: u32, text: impl Into<String>) -> Self {
        MsError {
            status,
            errors: vec![error_object(code, text.into(), None)],
        }
    }

    /// Adds `parameter` to the (first) error object.
    #[must_use]
    pub fn parameter(mut self, parameter: &str) -> Self {
        if let Some(Value::Object(o)) = self.errors.first_mut() {
            o.insert("parameter".into(), Value::String(parameter.to_string()));
        }
        self
    }

    /// Adds `dependencies` (metas of blocking entities) to the (first) error object.
    #[must_use]
    pub fn dependencies(mut self, deps: Vec<Value>) -> Self {
        if let Some(Value::Object(o)) = self.errors.first_mut() {
            o.insert("dependencies".into(), Value::Array(deps));
        }
        self
    }

    /// Adds `meta` (the entity the error is about) to every error object.
    #[must_use]
    pub fn with_meta(mut self, meta: &Value) -> Self {
        for e in &mut self.errors {
            if let Value::Object(o) = e {
                o.insert("meta".into(), meta.clone());
            }
        }
        self
    }

    /// The JSON body `{"errors": [...]}`.
    pub fn body(&self) -> Value {
        json!({ "errors": self.errors })
    }

    /// The МойСклад code of the first error, if any.
    pub fn code(&self) -> Option<u64> {
        self.errors
            .first()
            .and_then(|e| e.get("code"))
            .and_then(Value::as_u64)
    }
}

fn error_object(code: u32, text: String, parameter: Option<&str>) -> Value {
    let mut o = Map::new();
    o.insert("error".into(), Value::String(text));
    o.insert("code".into(), json!(code));
    if let Some(p) = parameter {
        o.insert("parameter".into(), Value::String(p.to_string()));
    }
    o.insert(
        "moreInfo".into(),
        Value::String(format!("{MORE_INFO}{code}")),
    );
    Value::Object(o)
}

/// 1002: an unknown path.
pub fn unknown_path(path: &str) -> MsError {
    MsError::new(
        StatusCode::NOT_FOUND,
        1002,
        format!("Неопознанный путь: {path}"),
    )
}

/// 1005: an unknown entity type.
pub fn unknown_type(ty: &str) -> MsError {
    MsError::new(
        StatusCode::NOT_FOUND,
        1005,
        format!("Неизвестный тип: {ty}"),
    )
}

/// 1021: an object with this type and id does not exist.
pub fn not_found(ty: &str, id: &str) -> MsError {
    MsError::new(
        StatusCode::NOT_FOUND,
        1021,
        format!("Объект с типом '{ty}' и идентификатором '{id}' не найден"),
    )
}

/// 1052: a malformed UUID.
pub fn bad_uuid(value: &str) -> MsError {
    MsError::new(StatusCode::BAD_REQUEST, 1052, "Неверный формат UUID").parameter(value)
}

/// 1039: the method is not supported for this resource.
pub fn method_not_allowed(method: &str) -> MsError {
    MsError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        1039,
        format!("Операция {method} не поддерживается для данного ресурса"),
    )
}

/// 1011: creating objects of this type is not supported.
pub fn create_not_supported(ty: &str) -> MsError {
    MsError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        1011,
        format!("Создание объектов типа '{ty}' не поддерживается"),
    )
}

/// 1009: editing objects of this type is not supported.
pub fn edit_not_supported(ty: &str) -> MsError {
    MsError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        1009,
        format!("Редактирование объектов типа '{ty}' не поддерживается"),
    )
}

/// 1028: the object is used elsewhere and cannot be deleted (409, with `dependencies`).
pub fn in_use(deps: Vec<Value>) -> MsError {
    MsError::new(
        StatusCode::CONFLICT,
        1028,
        "Объект уже используется и не может быть удален",
    )
    .dependencies(deps)
}

/// 1034: a filter error.
pub fn filter_error(text: &str) -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        1034,
        format!("Ошибка фильтрации: {text}"),
    )
}

/// 1007: a field the entity type does not have in a request body.
pub fn unknown_field(field: &str) -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        1007,
        format!("Ошибка формата: неизвестное поле '{field}'"),
    )
    .parameter(field)
}

/// 1034: a filter on a field the entity type cannot be filtered by.
pub fn filter_unknown_field(field: &str) -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        1034,
        format!("Ошибка фильтрации: поле '{field}' не поддерживается для фильтрации"),
    )
    .parameter("filter")
}

/// 1035: a bad date in a filter.
pub fn filter_date_error(parameter: &str) -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        1035,
        "Ошибка фильтрации: неверный формат даты параметра фильтрации",
    )
    .parameter(parameter)
}

/// 1084: a bad query-parameter value.
pub fn bad_param(param: &str, value: &str, allowed: &str) -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        1084,
        format!(
            "Неверное значение '{value}' параметра запроса '{param}', допустимые значения: '{allowed}'"
        ),
    )
    .parameter(param)
}

/// 1047: `syncId` cannot be changed by an update.
pub fn sync_id_changed() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        1047,
        "Вы не можете обновить поле syncId в запросе на обновление сущности",
    )
    .parameter("syncId")
}

/// 1049: too many requests per time window (429).
pub fn rate_limited() -> MsError {
    MsError::new(
        StatusCode::TOO_MANY_REQUESTS,
        1049,
        "Превышено ограничение на количество запросов в единицу времени",
    )
}

/// 1073: too many parallel requests (429).
pub fn too_parallel() -> MsError {
    MsError::new(
        StatusCode::TOO_MANY_REQUESTS,
        1073,
        "Превышено ограничение на одновременное количество запросов",
    )
}

/// 1056: authentication failed (401).
pub fn unauthorized() -> MsError {
    MsError::new(
        StatusCode::UNAUTHORIZED,
        1056,
        "Ошибка аутентификации: Неправильный пароль или имя пользователя или ключ авторизации",
    )
}

/// 1999: an unexpected error (used for injected 5xx).
pub fn unknown_error(status: StatusCode) -> MsError {
    MsError::new(status, 1999, "Неизвестная ошибка")
}

/// 2001: the body is not JSON.
pub fn bad_json() -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2001,
        "Ошибка формата: входящий запрос не соответствует формату JSON",
    )
}

/// 2005: the body must start with an object or an array.
pub fn not_object_or_array() -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2005,
        "Ошибка формата: входящий JSON должен начинаться либо с объекта, либо с массива",
    )
}

/// 2007: more than 1000 objects in an array (413).
pub fn too_many_objects() -> MsError {
    MsError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        2007,
        "Ошибка формата: слишком большое число вложенных объектов",
    )
}

/// 2009: a single-object endpoint got an array.
pub fn array_not_allowed() -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2009,
        "Ошибка формата: запрос на создание/обновление одной сущности не должен содержать массив",
    )
}

/// 2010: `meta` without `href`.
pub fn meta_without_href(field: &str) -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2010,
        format!("Ошибка формата: отсутствует href для meta поля '{field}'"),
    )
    .parameter(field)
}

/// 2011: `meta` without `type`.
pub fn meta_without_type(field: &str) -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2011,
        format!("Ошибка формата: отсутствует type для meta поля '{field}'"),
    )
    .parameter(field)
}

/// 2012: `meta` with an unknown `type`.
pub fn meta_unknown_type(field: &str) -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2012,
        format!("Ошибка формата: неизвестный type для meta поля '{field}'"),
    )
    .parameter(field)
}

/// 2013: `href` points to nothing.
pub fn bad_href(field: &str) -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2013,
        format!("Ошибка формата: неправильное значение href для meta поля '{field}'"),
    )
    .parameter(field)
}

/// 2014: a reference field without `meta`.
pub fn field_without_meta(field: &str) -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2014,
        format!("Ошибка формата: отсутствует meta для поля '{field}'"),
    )
    .parameter(field)
}

/// 2016: a value of the wrong JSON type.
pub fn wrong_type(field: &str, expected: &str) -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2016,
        format!("Ошибка формата: значение поля '{field}' не соответствует типу {expected}"),
    )
    .parameter(field)
}

/// 2022: more than 1000 elements in a nested collection (413).
pub fn too_many_nested(field: &str) -> MsError {
    MsError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        2022,
        "Ошибка формата: слишком большое число элементов вложенной коллекции",
    )
    .parameter(field)
}

/// 2024: `href` points to an entity of the wrong type.
pub fn wrong_ref_type(field: &str, got: &str, want: &str) -> MsError {
    MsError::new(
        StatusCode::BAD_REQUEST,
        2024,
        format!(
            "Ошибка формата: href указывает на сущность неправильного типа '{got}', требуется '{want}'"
        ),
    )
    .parameter(field)
}

/// 3000: a required field is empty or missing.
pub fn required(field: &str) -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        3000,
        format!("Ошибка сохранения объекта: поле '{field}' не может быть пустым или отсутствовать"),
    )
    .parameter(field)
}

/// 3002: a field cannot be negative.
pub fn negative(field: &str) -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        3002,
        format!("Ошибка сохранения объекта: поле '{field}' не может иметь отрицательное значение"),
    )
    .parameter(field)
}

/// 3005: an invalid enum value.
pub fn bad_enum(field: &str, value: &str, allowed: &str) -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        3005,
        format!(
            "Ошибка сохранения объекта: неверное значение '{value}' поля '{field}'. Допустимые значения: {allowed}"
        ),
    )
    .parameter(field)
}

/// 3006: a uniqueness constraint is broken.
pub fn not_unique(parameter: &str) -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        3006,
        format!(
            "Ошибка сохранения объекта: нарушено ограничение уникальности параметра '{parameter}'"
        ),
    )
    .parameter(parameter)
}

/// 3015: an invalid e-mail.
pub fn bad_email(value: &str) -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        3015,
        format!("Ошибка валидации: Ошибка валидации: некорректный адрес E-mail: '{value}'"),
    )
    .parameter("email")
}

/// 11002: the state belongs to another entity type.
pub fn foreign_state() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        11002,
        "Ошибка сохранения объекта: статус принадлежит другому типу сущности",
    )
    .parameter("state")
}

/// 17003: a position's reserve exceeds its quantity.
pub fn reserve_exceeds_quantity() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        17003,
        "Ошибка сохранения объекта: резерв позиции не может превышать количество",
    )
    .parameter("reserve")
}

/// 17007: VAT above 100.
pub fn vat_too_big() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        17007,
        "Ошибка сохранения объекта: значение НДС не может превышать 100",
    )
    .parameter("vat")
}

/// 17008: discount above 100.
pub fn discount_too_big() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        17008,
        "Ошибка сохранения объекта: значение скидки не может превышать 100",
    )
    .parameter("discount")
}

/// 21000: a move with the same source and target store.
pub fn same_stores() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        21000,
        "Ошибка сохранения объекта: склад-отправитель и склад-получатель совпадают",
    )
    .parameter("targetStore")
}

/// 22000: payment `linkedSum` total exceeds the payment `sum`.
pub fn linked_sum_exceeds() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        22000,
        "Ошибка сохранения объекта: сумма привязанных документов превышает сумму платежа",
    )
    .parameter("operations")
}

/// 22001: a payment linked to the same document twice.
pub fn linked_twice() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        22001,
        "Ошибка сохранения объекта: платеж не может быть привязан к одному документу несколько раз",
    )
    .parameter("operations")
}

/// 30003: a webhook for this (entityType, action, url) already exists.
pub fn webhook_exists() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        30003,
        "Вебхук на данное действие над сущностью с таким url уже существует",
    )
}

/// 30005: the webhook URL is invalid.
pub fn webhook_bad_url() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        30005,
        "Некорректный url вебхука",
    )
    .parameter("url")
}

/// 30007: at most five webhooks of the same action per entity type.
pub fn webhook_too_many() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        30007,
        "Превышено количество вебхуков для данного типа сущности",
    )
}

/// 30009: `diffType` is allowed only with the UPDATE action.
pub fn webhook_diff_type() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        30009,
        "Параметр diffType может быть указан только для действия UPDATE",
    )
    .parameter("diffType")
}

/// 30010: the webhook URL is longer than 255 characters.
pub fn webhook_url_too_long() -> MsError {
    MsError::new(
        StatusCode::PRECONDITION_FAILED,
        30010,
        "Длина url вебхука превышает 255 символов",
    )
    .parameter("url")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_documented_shape() {
        let e = not_unique("name");
        assert_eq!(e.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            e.body(),
            json!({"errors": [{
                "error": "Ошибка сохранения объекта: нарушено ограничение уникальности параметра 'name'",
                "code": 3006,
                "moreInfo": "https://dev.moysklad.ru/doc/api/remap/1.2/#error_3006",
                "parameter": "name"
            }]})
        );
        assert_eq!(e.code(), Some(3006));
    }
}
