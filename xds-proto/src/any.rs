//! Packing and unpacking `google.protobuf.Any`.

use prost::{Message, Name};

use crate::protobuf::Any;

/// Packs a message into an `Any` with its canonical type URL.
///
/// ```
/// use xds_proto::any::{pack, unpack};
/// use xds_proto::envoy::envoy::config::cluster::v3::Cluster;
///
/// let any = pack(&Cluster { name: "c1".into(), ..Default::default() });
/// assert_eq!(any.type_url, xds_proto::type_url::CLUSTER);
/// let back: Cluster = unpack(&any).unwrap();
/// assert_eq!(back.name, "c1");
/// ```
pub fn pack<T: Message + Name>(msg: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: msg.encode_to_vec(),
    }
}

/// Why an `Any` could not be unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnpackError {
    /// The `Any` holds another type.
    WrongType {
        /// The type URL that was expected.
        expected: String,
        /// The type URL found.
        found: String,
    },
    /// The bytes do not decode as the expected message.
    Decode(String),
}

impl std::fmt::Display for UnpackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnpackError::WrongType { expected, found } => {
                write!(f, "expected type {expected}, found {found}")
            }
            UnpackError::Decode(e) => write!(f, "cannot decode: {e}"),
        }
    }
}

impl std::error::Error for UnpackError {}

/// Unpacks an `Any` holding a `T`; the type URL must be `T`'s.
pub fn unpack<T: Message + Name + Default>(any: &Any) -> Result<T, UnpackError> {
    let expected = T::type_url();
    if any.type_url != expected {
        return Err(UnpackError::WrongType {
            expected,
            found: any.type_url.clone(),
        });
    }
    T::decode(any.value.as_slice()).map_err(|e| UnpackError::Decode(e.to_string()))
}
