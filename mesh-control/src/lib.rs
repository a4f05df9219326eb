//! A small development control plane for the mesh (in progress).
