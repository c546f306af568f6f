//! Custom scalars of the W&B schema: `JSONString`, `JSON`, `DateTime`, `Int64`.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// `JSONString`: a string holding (W&B-dialect) JSON. Inputs given as objects are serialised.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonString(pub String);

#[Scalar(name = "JSONString")]
impl ScalarType for JsonString {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(JsonString(s)),
            Value::Null => Err(InputValueError::custom("JSONString cannot be null")),
            other => serde_json::to_string(&other)
                .map(JsonString)
                .map_err(|e| InputValueError::custom(e.to_string())),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// `JSON`: any JSON value (non-finite numbers must already be string sentinels).
#[derive(Debug, Clone, PartialEq)]
pub struct Json(pub Value);

#[Scalar(name = "JSON")]
impl ScalarType for Json {
    fn parse(value: Value) -> InputValueResult<Self> {
        Ok(Json(value))
    }

    fn to_value(&self) -> Value {
        self.0.clone()
    }
}

/// `DateTime`: `YYYY-MM-DDTHH:MM:SS` (UTC).
#[derive(Debug, Clone, PartialEq)]
pub struct DateTime(pub String);

impl DateTime {
    /// Formats µs since the epoch.
    pub fn from_micros(micros: i64) -> Self {
        DateTime(crate::state::format_datetime(micros))
    }
}

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(DateTime(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// `Int64`: a 64-bit integer; accepts a JSON number or a numeric string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int64(pub i64);

#[Scalar(name = "Int64")]
impl ScalarType for Int64 {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Int64)
                .ok_or_else(|| InputValueError::custom(format!("{n} is not a 64-bit integer"))),
            Value::String(s) => s
                .trim()
                .parse()
                .map(Int64)
                .map_err(|_| InputValueError::custom(format!("{s:?} is not a 64-bit integer"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::from(self.0)
    }
}
