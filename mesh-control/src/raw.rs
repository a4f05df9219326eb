//! Raw resource files for `serve --raw`: any Envoy resources, served as is.
//!
//! Two forms (JSON, or the same structure in YAML), told apart per resource:
//! - Envoy's proto-JSON form: `{ "resources": [ { "@type": "type.googleapis.com/...", ... } ] }`
//!   (see [`crate::envoy_json`]);
//! - protobuf bytes: `{ "resources": [ { "type_url": "...", "name": "...", "value_base64": "..." } ] }`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use xds_proto::protobuf::Any;

use crate::error::ConfigError;

/// A raw resource file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    /// The resources.
    #[serde(default)]
    pub resources: Vec<RawResource>,
}

/// One resource of a [`RawFile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResource {
    /// The type URL, e.g. `type.googleapis.com/envoy.config.listener.v3.Listener`.
    pub type_url: String,
    /// The resource name.
    pub name: String,
    /// The serialized protobuf message, standard base64.
    pub value_base64: String,
}

/// Resources by type URL, each `(name, resource)`.
pub type RawResources = BTreeMap<String, Vec<(String, Any)>>;

/// Parses one raw file's text; `json` selects JSON, otherwise YAML.
pub fn parse_raw(text: &str, json: bool) -> Result<RawResources, ConfigError> {
    let value: serde_json::Value = if json {
        serde_json::from_str(text).map_err(|e| ConfigError::Raw(e.to_string()))?
    } else {
        serde_yaml::from_str(text).map_err(|e| ConfigError::Raw(e.to_string()))?
    };
    let is_envoy_json = value
        .get("resources")
        .and_then(|r| r.as_array())
        .is_some_and(|r| r.iter().any(|x| x.get("@type").is_some()));
    if is_envoy_json {
        let mut out = RawResources::new();
        let list = value
            .get("resources")
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default();
        for (i, r) in list.iter().enumerate() {
            let (name, any) = crate::envoy_json::resource_from_json(r, &format!("resources[{i}]"))?;
            out.entry(any.type_url.clone())
                .or_default()
                .push((name, any));
        }
        return Ok(out);
    }
    let file: RawFile = if json {
        serde_json::from_str(text).map_err(|e| ConfigError::Raw(e.to_string()))?
    } else {
        serde_yaml::from_str(text).map_err(|e| ConfigError::Raw(e.to_string()))?
    };
    let mut out = RawResources::new();
    for (i, r) in file.resources.into_iter().enumerate() {
        if r.type_url.is_empty() || r.name.is_empty() {
            return Err(ConfigError::invalid(
                format!("resources[{i}]"),
                "type_url and name must not be empty",
            ));
        }
        let value = base64::engine::general_purpose::STANDARD
            .decode(r.value_base64.trim())
            .map_err(|e| {
                ConfigError::invalid(format!("resources[{i}].value_base64"), e.to_string())
            })?;
        out.entry(r.type_url.clone()).or_default().push((
            r.name,
            Any {
                type_url: r.type_url,
                value,
            },
        ));
    }
    Ok(out)
}

/// The files a raw path stands for: the file itself, or a directory's `*.json`, `*.yaml`
/// and `*.yml` files in name order.
pub fn raw_files(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io)? {
        let file = entry.map_err(io)?.path();
        let ext = file
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if matches!(ext, "json" | "yaml" | "yml") && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads a raw file or directory, merging all files.
pub fn load_raw(path: &Path) -> Result<RawResources, ConfigError> {
    let mut all = RawResources::new();
    for file in raw_files(path)? {
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io {
            path: file.clone(),
            source,
        })?;
        let json = file.extension().is_some_and(|e| e == "json");
        for (type_url, list) in parse_raw(&text, json).map_err(|e| in_file(&file, e))? {
            all.entry(type_url).or_default().extend(list);
        }
    }
    Ok(all)
}

fn in_file(file: &Path, e: ConfigError) -> ConfigError {
    ConfigError::Raw(format!("{}: {e}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_and_rejects_bad_base64() {
        let text = r#"{"resources":[{"type_url":"t/x","name":"a","value_base64":"AQI="}]}"#;
        let r = parse_raw(text, true).unwrap();
        assert_eq!(r["t/x"][0].1.value, vec![1, 2]);
        assert_eq!(r["t/x"][0].1.type_url, "t/x");
        let bad = r#"{"resources":[{"type_url":"t/x","name":"a","value_base64":"!!"}]}"#;
        let e = parse_raw(bad, true).unwrap_err();
        assert_eq!(e.field(), Some("resources[0].value_base64"));
    }
}
