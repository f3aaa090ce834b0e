//! The README's policy table is [`StrategySpec::TABLE`], rendered: the two cannot drift.

use trueip::StrategySpec;

/// The table as the README writes it.
fn rendered() -> String {
    let mut out = String::from(
        "| policy | reads | typical deployment | safe when |\n| --- | --- | --- | --- |\n",
    );
    for row in StrategySpec::TABLE {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            row.name, row.reads, row.deployment, row.safe_when
        ));
    }
    out
}

#[test]
fn readme_policy_table_is_the_spec_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md at the workspace root");
    let table = rendered();
    assert!(
        readme.contains(&table),
        "README.md's policy table differs from StrategySpec::TABLE; paste this under \"## Policies\":\n\n{table}"
    );
}
