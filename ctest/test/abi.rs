#![allow(bad_style, clippy::all, unused_imports, deprecated)]

use dist_worker::abi::*;
use std::os::raw::{c_char, c_void};

include!(concat!(env!("OUT_DIR"), "/all.rs"));
