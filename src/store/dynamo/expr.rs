//! A small builder of DynamoDB expressions: every attribute name and value becomes a
//! placeholder (`#n0`, `:v0`) as it is used, so an expression never carries a value
//! inline, never clashes with a reserved word, and never declares a placeholder it does
//! not use (which DynamoDB refuses).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

/// Placeholders for one request.
#[derive(Debug, Default)]
pub(super) struct Placeholders {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Placeholders {
    /// The placeholder of attribute `name` (the same one each time it is asked for).
    pub(super) fn name(&mut self, name: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, n)| n.as_str() == name) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), name.to_owned());
        placeholder
    }

    /// A placeholder for `value`.
    pub(super) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub(super) fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// An `UpdateItem` (or transactional `Update`) expression with its condition.
#[derive(Debug, Default)]
pub(super) struct Update {
    pub(super) p: Placeholders,
    sets: Vec<String>,
    removes: Vec<String>,
    adds: Vec<String>,
    conditions: Vec<String>,
}

impl Update {
    /// `SET attr = value`.
    pub(super) fn set(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        let (a, v) = (self.p.name(attr), self.p.value(value));
        self.sets.push(format!("{a} = {v}"));
        self
    }

    /// `SET attr = value`, or `REMOVE attr` when there is no value.
    pub(super) fn set_or_remove(&mut self, attr: &str, value: Option<AttributeValue>) -> &mut Self {
        match value {
            Some(v) => self.set(attr, v),
            None => self.remove(attr),
        }
    }

    /// `SET attr = if_not_exists(attr, value)`: written once, kept after.
    pub(super) fn set_once(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        let (a, v) = (self.p.name(attr), self.p.value(value));
        self.sets.push(format!("{a} = if_not_exists({a}, {v})"));
        self
    }

    /// `SET attr = attr + 1`, starting from 0 where it is absent.
    pub(super) fn increment(&mut self, attr: &str) -> &mut Self {
        let (a, zero, one) = (
            self.p.name(attr),
            self.p.value(AttributeValue::N("0".into())),
            self.p.value(AttributeValue::N("1".into())),
        );
        self.sets.push(format!("{a} = if_not_exists({a}, {zero}) + {one}"));
        self
    }

    /// `ADD attr value`: a set's union with `value` (or a number's sum).
    pub(super) fn add(&mut self, attr: &str, value: AttributeValue) -> &mut Self {
        let (a, v) = (self.p.name(attr), self.p.value(value));
        self.adds.push(format!("{a} {v}"));
        self
    }

    pub(super) fn remove(&mut self, attr: &str) -> &mut Self {
        let a = self.p.name(attr);
        self.removes.push(a);
        self
    }

    /// Adds a clause to the condition (clauses are joined with `AND`); build it with
    /// `self.p`'s placeholders.
    pub(super) fn condition(&mut self, clause: impl Into<String>) -> &mut Self {
        self.conditions.push(clause.into());
        self
    }

    pub(super) fn expression(&self) -> String {
        let mut out = String::new();
        if !self.sets.is_empty() {
            out.push_str("SET ");
            out.push_str(&self.sets.join(", "));
        }
        if !self.removes.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("REMOVE ");
            out.push_str(&self.removes.join(", "));
        }
        if !self.adds.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str("ADD ");
            out.push_str(&self.adds.join(", "));
        }
        out
    }

    pub(super) fn condition_expression(&self) -> Option<String> {
        (!self.conditions.is_empty()).then(|| self.conditions.join(" AND "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_names_every_attribute_and_value_by_placeholder() {
        let mut u = Update::default();
        u.set("status", AttributeValue::S("active".into()))
            .remove("status_reason")
            .increment("version")
            .set_or_remove("name", None);
        let status = u.p.name("status");
        let active = u.p.value(AttributeValue::S("active".into()));
        u.condition(format!("{status} = {active}"));
        assert_eq!(
            u.expression(),
            "SET #n0 = :v0, #n2 = if_not_exists(#n2, :v1) + :v2 REMOVE #n1, #n3"
        );
        assert_eq!(u.condition_expression().as_deref(), Some("#n0 = :v3"));
        let names = u.p.names().unwrap_or_default();
        assert_eq!(names.get("#n0").map(String::as_str), Some("status"));
        assert_eq!(names.len(), 4);
        assert_eq!(u.p.values().map(|v| v.len()), Some(4));
    }
}
