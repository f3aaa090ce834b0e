//! Header names for the adapters' withholding tests (tests/axum.rs, tests/actix.rs).

/// A header name: one of the withheld `set`'s (in any spelling: its dashes as `_`, `.` or
/// `~`), one a prefilter could take for one (a length or first byte they share), or a
/// common one.
pub fn header_name(
    set: &'static [trueip::headers::FieldName],
) -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let common = prop::sample::select(vec![
        "accept",
        "user-agent",
        "x-request-id",
        "cookie",
        "x-forwarded-fox",
        "x-real-i",
        "x-real-ips",
        "forwarded-for",
        "x-azure-fdix",
        "via",
        "x-filler",
    ]);
    prop_oneof![
        3 => (prop::sample::select(set), prop::sample::select(vec!["-", "_", ".", "~"]))
            .prop_map(|(n, dash)| n.as_str().replace('-', dash)),
        1 => common.prop_map(str::to_string),
    ]
}
