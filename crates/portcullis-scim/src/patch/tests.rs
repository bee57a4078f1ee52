//! PATCH tests with the request shapes Okta and Entra ID send (values are ours).

use serde_json::{Map, Value, json};

use super::*;
use crate::schema::{ENTERPRISE_USER_SCHEMA, GROUP, GROUP_SCHEMA, USER, USER_SCHEMA};

fn stored_user() -> Map<String, Value> {
    let user = json!({
        "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
        "id": "6f1c1c4e-2b1d-4c55-9f0e-5f2d8a3b7c11",
        "externalId": "00u7kq2HopperG",
        "userName": "grace.hopper@navy.example",
        "name": {"givenName": "Grace", "familyName": "Hopper", "formatted": "Grace Hopper"},
        "displayName": "Grace Hopper",
        "active": true,
        "emails": [
            {"value": "grace.hopper@navy.example", "type": "work", "primary": true},
            {"value": "gh@home.example", "type": "home"}
        ],
        "meta": {
            "resourceType": "User",
            "created": "2024-01-09T08:00:00Z",
            "lastModified": "2024-03-01T12:30:00Z",
            "version": "W/\"3\""
        },
        ENTERPRISE_USER_SCHEMA: {"employeeNumber": "1906", "department": "Computing"}
    });
    object(user)
}

fn stored_group() -> Map<String, Value> {
    object(json!({
        "schemas": [GROUP_SCHEMA],
        "id": "0d6f8c1a-group-compilers",
        "displayName": "Compilers",
        "members": [
            {"value": "u-1", "display": "Grace Hopper"},
            {"value": "u-2", "display": "Ada Lovelace"}
        ],
        "meta": {"resourceType": "Group", "version": "W/\"7\""}
    }))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("fixture is not an object: {other}"),
    }
}

fn request(operations: Value) -> PatchRequest {
    let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations});
    PatchRequest::from_json(&body).unwrap_or_else(|e| panic!("request should parse: {e}"))
}

fn patch(resource: &Map<String, Value>, resource_type: &ResourceType, operations: Value) -> PatchOutcome {
    apply(resource, resource_type, &request(operations)).unwrap_or_else(|e| panic!("patch should apply: {e}"))
}

fn patch_user(operations: Value) -> Value {
    patch(&stored_user(), &USER, operations).resource
}

fn patch_error(resource: &Map<String, Value>, resource_type: &ResourceType, operations: Value) -> PatchError {
    match apply(resource, resource_type, &request(operations)) {
        Ok(outcome) => panic!("patch should fail, gave {}", outcome.resource),
        Err(e) => e,
    }
}

fn member_values(group: &Value) -> Vec<&str> {
    group["members"].as_array().map_or(Vec::new(), |m| m.iter().filter_map(|m| m["value"].as_str()).collect())
}

// Users: Okta

#[test]
fn okta_deactivates_a_user_with_a_pathless_replace() {
    let outcome = patch(&stored_user(), &USER, json!([{"op": "replace", "value": {"active": false}}]));
    assert_eq!(outcome.resource["active"], false);
    assert!(outcome.changed);
    assert!(outcome.membership.is_empty());
}

#[test]
fn okta_updates_profile_attributes_by_path() {
    let user = patch_user(json!([
        {"op": "replace", "path": "name.familyName", "value": "Murray Hopper"},
        {"op": "add", "path": "title", "value": "Rear Admiral"}
    ]));
    assert_eq!(
        user["name"],
        json!({"givenName": "Grace", "familyName": "Murray Hopper", "formatted": "Grace Hopper"})
    );
    assert_eq!(user["title"], "Rear Admiral");
}

// Users: Entra ID

#[test]
fn entra_sends_booleans_as_strings_in_any_case() {
    for (sent, stored) in [("False", false), ("false", false), ("TRUE", true), ("True", true)] {
        let user = patch_user(json!([{"op": "Replace", "path": "active", "value": sent}]));
        assert_eq!(user["active"], stored, "{sent}");
    }
    let e = patch_error(&stored_user(), &USER, json!([{"op": "Replace", "path": "active", "value": "no"}]));
    assert_eq!(e.scim_type(), ScimType::InvalidValue);
    assert_eq!(e.to_string(), "Operations[0] (replace active): active takes true or false, not \"no\"");
}

#[test]
fn entra_replaces_without_a_path_using_dotted_and_urn_keys() {
    let user = patch_user(json!([{
        "op": "Replace",
        "value": {
            "active": "False",
            "name.givenName": "Bob",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Research"
        }
    }]));
    assert_eq!(user["active"], false);
    assert_eq!(user["name"]["givenName"], "Bob");
    assert_eq!(user["name"]["familyName"], "Hopper");
    assert_eq!(user[ENTERPRISE_USER_SCHEMA], json!({"employeeNumber": "1906", "department": "Research"}));
}

#[test]
fn entra_sets_the_manager_as_a_bare_id() {
    let user = patch_user(json!([{
        "op": "Add",
        "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
        "value": "3a6b1c0e-manager"
    }]));
    assert_eq!(user[ENTERPRISE_USER_SCHEMA]["manager"], json!({"value": "3a6b1c0e-manager"}));
}

#[test]
fn entra_updates_the_work_email_through_a_value_filter() {
    let user = patch_user(json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "g.hopper@navy.example"}
    ]));
    assert_eq!(
        user["emails"],
        json!([
            {"value": "g.hopper@navy.example", "type": "work", "primary": true},
            {"value": "gh@home.example", "type": "home"}
        ])
    );
}

#[test]
fn add_through_a_value_filter_that_matches_nothing_creates_the_value() {
    let user = patch_user(json!([
        {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
        {"op": "Replace", "path": "addresses[type eq \"work\"].locality", "value": "Arlington"}
    ]));
    assert_eq!(user["phoneNumbers"], json!([{"type": "mobile", "value": "+1 555 0100"}]));
    assert_eq!(user["addresses"], json!([{"type": "work", "locality": "Arlington"}]));
}

#[test]
fn entra_app_role_with_a_string_boolean_in_the_filter() {
    let path = "roles[primary eq \"True\"].value";
    let user = patch_user(json!([{"op": "Add", "path": path, "value": "Auditor"}]));
    assert_eq!(user["roles"], json!([{"primary": true, "value": "Auditor"}]));
    let user =
        patch(&object(user), &USER, json!([{"op": "Replace", "path": path, "value": "Admin"}])).resource;
    assert_eq!(user["roles"], json!([{"primary": true, "value": "Admin"}]));
}

#[test]
fn a_value_filter_that_matches_nothing_and_cannot_seed_a_value_is_no_target() {
    let e = patch_error(
        &stored_user(),
        &USER,
        json!([{"op": "replace", "path": "emails[value co \"@nowhere\"].type", "value": "other"}]),
    );
    assert_eq!(e.scim_type(), ScimType::NoTarget);
}

#[test]
fn pathless_value_may_key_the_enterprise_extension_object() {
    let mut user = stored_user();
    user.remove(ENTERPRISE_USER_SCHEMA);
    user.insert("schemas".into(), json!([USER_SCHEMA]));
    let outcome = patch(
        &user,
        &USER,
        json!([{"op": "add", "value": {
            ENTERPRISE_USER_SCHEMA: {"employeeNumber": "2000", "manager": {"value": "u-9"}},
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]
        }}]),
    );
    let user = outcome.resource;
    assert_eq!(user[ENTERPRISE_USER_SCHEMA], json!({"employeeNumber": "2000", "manager": {"value": "u-9"}}));
    assert_eq!(user["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
}

#[test]
fn a_path_naming_the_extension_takes_its_object_even_with_schemas_inside() {
    // scim2-tester serialises the extension model, `schemas` included.
    let outcome = patch(
        &stored_user(),
        &USER,
        json!([{"op": "replace", "path": ENTERPRISE_USER_SCHEMA, "value": {
            "schemas": [ENTERPRISE_USER_SCHEMA],
            "department": "Research",
            "manager": {"value": "u-9"}
        }}]),
    );
    let user = outcome.resource;
    assert_eq!(
        user[ENTERPRISE_USER_SCHEMA],
        json!({"employeeNumber": "1906", "department": "Research", "manager": {"value": "u-9"}})
    );
    assert_eq!(user["schemas"], json!([USER_SCHEMA, ENTERPRISE_USER_SCHEMA]));
}

#[test]
fn removing_the_last_extension_attribute_drops_the_extension_from_schemas() {
    let user = patch_user(json!([
        {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"},
        {"op": "Remove", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"}
    ]));
    assert!(user.get(ENTERPRISE_USER_SCHEMA).is_none());
    assert_eq!(user["schemas"], json!([USER_SCHEMA]));
    let user = patch_user(json!([{"op": "remove", "path": ENTERPRISE_USER_SCHEMA}]));
    assert!(user.get(ENTERPRISE_USER_SCHEMA).is_none());
}

#[test]
fn removing_a_manager_only_removes_the_one_named() {
    let mut user = stored_user();
    user[ENTERPRISE_USER_SCHEMA]["manager"] = json!({"value": "m-1"});
    let manager_path = format!("{ENTERPRISE_USER_SCHEMA}:manager");
    let outcome =
        patch(&user, &USER, json!([{"op": "Remove", "path": manager_path, "value": [{"value": "m-2"}]}]));
    assert!(!outcome.changed);
    let outcome =
        patch(&user, &USER, json!([{"op": "Remove", "path": manager_path, "value": [{"value": "m-1"}]}]));
    assert!(outcome.resource[ENTERPRISE_USER_SCHEMA].get("manager").is_none());
}

// Multi-valued attributes

#[test]
fn add_appends_to_a_multi_valued_attribute_and_replace_replaces_it() {
    let user = patch_user(
        json!([{"op": "add", "path": "emails", "value": [{"value": "grace@cobol.example", "type": "other"}]}]),
    );
    assert_eq!(user["emails"].as_array().unwrap().len(), 3);
    let user = patch_user(
        json!([{"op": "replace", "path": "emails", "value": [{"value": "only@navy.example", "type": "work"}]}]),
    );
    assert_eq!(user["emails"], json!([{"value": "only@navy.example", "type": "work"}]));
}

#[test]
fn adding_an_address_already_there_merges_into_it_ignoring_case() {
    let user = patch_user(
        json!([{"op": "add", "path": "emails", "value": {"value": "GH@HOME.example", "display": "Home"}}]),
    );
    // Same value (emails.value is not caseExact): merged, with the spelling just sent.
    assert_eq!(user["emails"][1], json!({"value": "GH@HOME.example", "type": "home", "display": "Home"}));
    assert_eq!(user["emails"].as_array().unwrap().len(), 2);
}

#[test]
fn a_new_primary_clears_the_old_one() {
    let user = patch_user(json!([{"op": "add", "path": "emails", "value": [
        {"value": "grace@cobol.example", "type": "other", "primary": true}
    ]}]));
    assert_eq!(user["emails"][0]["primary"], false);
    assert_eq!(user["emails"][2]["primary"], true);
    let user =
        patch_user(json!([{"op": "replace", "path": "emails[type eq \"home\"].primary", "value": "True"}]));
    assert_eq!(user["emails"][0]["primary"], false);
    assert_eq!(user["emails"][1]["primary"], true);
}

#[test]
fn two_primaries_in_one_operation_are_invalid() {
    let e = patch_error(
        &stored_user(),
        &USER,
        json!([{"op": "replace", "path": "emails", "value": [
            {"value": "a@x.example", "primary": true},
            {"value": "b@x.example", "primary": true}
        ]}]),
    );
    assert_eq!(e.scim_type(), ScimType::InvalidValue);
}

#[test]
fn remove_through_a_value_filter_removes_matching_values_or_their_sub_attribute() {
    let user = patch_user(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]));
    assert_eq!(
        user["emails"],
        json!([{"value": "grace.hopper@navy.example", "type": "work", "primary": true}])
    );
    let user = patch_user(json!([{"op": "remove", "path": "emails[type eq \"work\"].primary"}]));
    assert_eq!(user["emails"][0], json!({"value": "grace.hopper@navy.example", "type": "work"}));
    let user = patch_user(json!([{"op": "remove", "path": "emails[type sw \"\"]"}]));
    assert!(user.get("emails").is_none(), "an emptied attribute is unassigned");
}

#[test]
fn a_sub_attribute_of_a_multi_valued_attribute_needs_a_filter() {
    let e = patch_error(
        &stored_user(),
        &USER,
        json!([{"op": "replace", "path": "emails.value", "value": "x@y.example"}]),
    );
    assert_eq!(e.scim_type(), ScimType::InvalidPath);
}

// Groups

#[test]
fn okta_removes_a_member_by_filter() {
    let outcome =
        patch(&stored_group(), &GROUP, json!([{"op": "remove", "path": "members[value eq \"u-1\"]"}]));
    assert_eq!(member_values(&outcome.resource), ["u-2"]);
    assert_eq!(outcome.membership, MembershipChanges { added: vec![], removed: vec!["u-1".into()] });
}

#[test]
fn okta_adds_members_with_display_names() {
    let outcome = patch(
        &stored_group(),
        &GROUP,
        json!([{"op": "add", "path": "members", "value": [{"value": "u-3", "display": "Barbara Liskov"}]}]),
    );
    assert_eq!(member_values(&outcome.resource), ["u-1", "u-2", "u-3"]);
    assert_eq!(outcome.membership.added, ["u-3"]);
}

#[test]
fn okta_renames_a_group_sending_its_id_along() {
    let group = stored_group();
    let id = group["id"].clone();
    let outcome = patch(
        &group,
        &GROUP,
        json!([{"op": "replace", "value": {"id": id, "displayName": "Compiler Team"}}]),
    );
    assert_eq!(outcome.resource["displayName"], "Compiler Team");
    assert_eq!(outcome.resource["id"], id);
    let e = patch_error(
        &group,
        &GROUP,
        json!([{"op": "replace", "value": {"id": "another", "displayName": "X"}}]),
    );
    assert_eq!(e.scim_type(), ScimType::Mutability);
    assert_eq!(e.to_string(), "Operations[0] (replace id): id is readOnly");
}

#[test]
fn entra_removes_members_listed_in_the_value() {
    let outcome = patch(
        &stored_group(),
        &GROUP,
        json!([{"op": "Remove", "path": "members", "value": [{"value": "u-2"}]}]),
    );
    assert_eq!(member_values(&outcome.resource), ["u-1"]);
    assert_eq!(outcome.membership.removed, ["u-2"]);
}

#[test]
fn adding_an_existing_member_is_not_an_error_and_not_a_duplicate() {
    let outcome = patch(
        &stored_group(),
        &GROUP,
        json!([{"op": "Add", "path": "members", "value": [{"value": "u-1"}, {"value": "u-4"}, {"value": "u-4"}]}]),
    );
    assert_eq!(member_values(&outcome.resource), ["u-1", "u-2", "u-4"]);
    assert_eq!(outcome.membership, MembershipChanges { added: vec!["u-4".into()], removed: vec![] });
}

#[test]
fn removing_a_member_that_is_not_there_succeeds_and_changes_nothing() {
    for operations in [
        json!([{"op": "remove", "path": "members[value eq \"u-404\"]"}]),
        json!([{"op": "Remove", "path": "members", "value": [{"value": "u-404"}]}]),
    ] {
        let outcome = patch(&stored_group(), &GROUP, operations);
        assert!(!outcome.changed);
        assert!(outcome.membership.is_empty());
    }
}

#[test]
fn replacing_or_removing_all_members_reports_each_change() {
    let outcome = patch(
        &stored_group(),
        &GROUP,
        json!([{"op": "replace", "path": "members", "value": [{"value": "u-2"}, {"value": "u-5"}]}]),
    );
    assert_eq!(
        outcome.membership,
        MembershipChanges { added: vec!["u-5".into()], removed: vec!["u-1".into()] }
    );
    let outcome = patch(&stored_group(), &GROUP, json!([{"op": "remove", "path": "members"}]));
    assert!(outcome.resource.get("members").is_none());
    assert_eq!(outcome.membership.removed, ["u-1", "u-2"]);
}

#[test]
fn large_groups_change_member_by_member() {
    let mut group = stored_group();
    let existing: Vec<Value> = (0..10_000).map(|i| json!({"value": format!("u-{i}")})).collect();
    group.insert("members".into(), Value::Array(existing));
    let added: Vec<Value> = (9_000..12_000).map(|i| json!({"value": format!("u-{i}")})).collect();
    let outcome = patch(
        &group,
        &GROUP,
        json!([
            {"op": "add", "path": "members", "value": added},
            {"op": "remove", "path": "members[value eq \"u-0\"]"}
        ]),
    );
    assert_eq!(outcome.resource["members"].as_array().map(Vec::len), Some(11_999));
    assert_eq!(outcome.membership.added.len(), 2_000);
    assert_eq!(outcome.membership.removed, ["u-0"]);
}

#[test]
fn a_member_needs_a_value() {
    let e = patch_error(
        &stored_group(),
        &GROUP,
        json!([{"op": "add", "path": "members", "value": [{"display": "x"}]}]),
    );
    assert_eq!(e.scim_type(), ScimType::InvalidValue);
}

// Mutability and errors

#[test]
fn read_only_immutable_and_required_attributes_are_protected() {
    let user = stored_user();
    for (operations, target) in [
        (json!([{"op": "replace", "path": "id", "value": "mine"}]), "id"),
        (
            json!([{"op": "replace", "path": "meta.lastModified", "value": "2030-01-01T00:00:00Z"}]),
            "meta.lastModified",
        ),
        (json!([{"op": "replace", "value": {"meta": {"version": "W/\"9\""}}}]), "meta"),
        (json!([{"op": "remove", "path": "userName"}]), "userName"),
        (json!([{"op": "replace", "path": "userName", "value": null}]), "userName"),
        (json!([{"op": "add", "path": "groups", "value": [{"value": "g-1"}]}]), "groups"),
    ] {
        let e = patch_error(&user, &USER, operations);
        assert_eq!(e.scim_type(), ScimType::Mutability, "{target}: {e}");
    }
    let e = patch_error(
        &stored_group(),
        &GROUP,
        json!([{"op": "replace", "path": "members[value eq \"u-1\"].value", "value": "u-9"}]),
    );
    assert_eq!(e.scim_type(), ScimType::Mutability);
    // Sending the current value of a readOnly attribute is fine.
    let outcome =
        patch(&user, &USER, json!([{"op": "replace", "path": "meta.resourceType", "value": "User"}]));
    assert!(!outcome.changed);
}

#[test]
fn the_whole_patch_applies_or_none_of_it() {
    let user = stored_user();
    let e = apply(
        &user,
        &USER,
        &request(json!([
            {"op": "replace", "path": "displayName", "value": "Amazing Grace"},
            {"op": "replace", "path": "id", "value": "stolen"}
        ])),
    )
    .unwrap_err();
    assert!(matches!(e, PatchError::Mutability { index: 1, .. }), "{e:?}");
    assert_eq!(user, stored_user(), "the stored resource is untouched");
}

#[test]
fn remove_without_a_path_is_no_target() {
    let e = patch_error(&stored_user(), &USER, json!([{"op": "remove"}]));
    assert_eq!(e.scim_type(), ScimType::NoTarget);
}

#[test]
fn unknown_attributes_are_refused_not_dropped() {
    let e = patch_error(
        &stored_user(),
        &USER,
        json!([{"op": "replace", "path": "favoriteColor", "value": "blue"}]),
    );
    assert_eq!(e.scim_type(), ScimType::InvalidPath);
    let e =
        patch_error(&stored_user(), &USER, json!([{"op": "replace", "value": {"favoriteColor": "blue"}}]));
    assert_eq!(e.scim_type(), ScimType::InvalidPath);
    assert_eq!(
        e.to_string(),
        "Operations[0]: invalid path: unknown attribute \"favoriteColor\" for resource type User"
    );
    let e = patch_error(
        &stored_user(),
        &USER,
        json!([{"op": "replace", "path": "name", "value": {"nickname": "Amazing"}}]),
    );
    assert_eq!(e.scim_type(), ScimType::InvalidValue);
}

#[test]
fn values_of_the_wrong_type_are_invalid() {
    for operations in [
        json!([{"op": "replace", "path": "userName", "value": 42}]),
        json!([{"op": "replace", "path": "userName", "value": ""}]),
        json!([{"op": "replace", "path": "name", "value": [1]}]),
        json!([{"op": "replace", "value": "active"}]),
        json!([{"op": "add", "path": "title"}]),
    ] {
        let e = patch_error(&stored_user(), &USER, operations.clone());
        assert_eq!(e.scim_type(), ScimType::InvalidValue, "{operations}: {e}");
    }
}

#[test]
fn null_unassigns_and_a_change_of_case_is_a_change() {
    let user = patch_user(json!([{"op": "replace", "path": "displayName", "value": null}]));
    assert!(user.get("displayName").is_none());
    let outcome = patch(
        &stored_user(),
        &USER,
        json!([{"op": "replace", "path": "displayName", "value": "GRACE HOPPER"}]),
    );
    assert!(outcome.changed);
    assert_eq!(outcome.resource["displayName"], "GRACE HOPPER");
}

#[test]
fn core_urn_prefixed_paths_and_any_case_names() {
    let user = patch_user(json!([
        {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:displayName", "value": "RADM Hopper"},
        {"op": "replace", "path": "NAME.GIVENNAME", "value": "Grace B."}
    ]));
    assert_eq!(user["displayName"], "RADM Hopper");
    assert_eq!(user["name"]["givenName"], "Grace B.");
    assert!(user["name"].get("GIVENNAME").is_none());
}

#[test]
fn attributes_keep_their_order() {
    let user = stored_user();
    let patched = patch(
        &user,
        &USER,
        json!([
            {"op": "replace", "path": "displayName", "value": "G. Hopper"},
            {"op": "add", "path": "emails", "value": [{"value": "x@navy.example"}]},
            {"op": "replace", "path": "name.givenName", "value": "G."}
        ]),
    )
    .resource;
    let keys = |map: &Map<String, Value>| map.keys().cloned().collect::<Vec<_>>();
    assert_eq!(patched.as_object().map(keys), Some(keys(&user)));
}

#[test]
fn a_password_is_handed_back_not_stored() {
    let outcome =
        patch(&stored_user(), &USER, json!([{"op": "replace", "value": {"password": "t0ps3cret!"}}]));
    assert_eq!(outcome.password.as_ref().map(NewPassword::expose), Some("t0ps3cret!"));
    assert!(outcome.resource.get("password").is_none());
    assert!(!outcome.changed);
    assert!(!format!("{outcome:?}").contains("t0ps3cret"));
}

// The request body

#[test]
fn request_member_names_and_op_names_in_any_case() {
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "operations": [
            {"Op": "REMOVE", "Path": "members[value eq \"u-1\"]"},
            {"OP": "Add", "PATH": "members", "VALUE": [{"value": "u-7"}]}
        ]
    });
    let request = PatchRequest::from_json(&body).unwrap();
    assert_eq!(request.operations[0].op, OpKind::Remove);
    assert_eq!(request.operations[1].op, OpKind::Add);
    assert_eq!(request.operations[1].value, Some(json!([{"value": "u-7"}])));
}

#[test]
fn malformed_requests_are_invalid_syntax() {
    for body in [
        json!([]),
        json!({"Operations": [{"op": "add", "value": {"title": "x"}}]}),
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "Operations": [{"op": "add"}]}),
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": []}),
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "move", "path": "title"}]}),
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"path": "title"}]}),
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "add", "path": 7}]}),
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ["add"]}),
    ] {
        let e = PatchRequest::from_json(&body).unwrap_err();
        assert_eq!(e.scim_type(), ScimType::InvalidSyntax, "{body}: {e}");
    }
}

#[test]
fn a_bad_path_fails_when_the_request_is_read() {
    let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [
        {"op": "add", "path": "title", "value": "x"},
        {"op": "remove", "path": "members[value equals \"u-1\"]"}
    ]});
    let e = PatchRequest::from_json(&body).unwrap_err();
    assert_eq!(e.scim_type(), ScimType::InvalidFilter);
    assert!(matches!(e, PatchError::Path { index: 1, .. }));
    let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": [{"op": "remove", "path": "emails[type eq \"work\"]x"}]});
    assert_eq!(PatchRequest::from_json(&body).unwrap_err().scim_type(), ScimType::InvalidPath);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn path() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(proptest::sample::select(vec![
            "active".to_owned(),
            "title".into(),
            "userName".into(),
            "name".into(),
            "name.givenName".into(),
            "emails".into(),
            "emails[type eq \"work\"]".into(),
            "emails[type eq \"work\"].value".into(),
            "emails[value co \"navy\"].primary".into(),
            "groups".into(),
            "id".into(),
            "meta.version".into(),
            format!("{ENTERPRISE_USER_SCHEMA}:manager"),
            ENTERPRISE_USER_SCHEMA.to_owned(),
        ]))
    }

    fn value() -> impl Strategy<Value = Option<Value>> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(|n| json!(n)),
            "[a-zA-Z@. ]{0,12}".prop_map(Value::String),
            Just(json!("False")),
        ];
        let value = leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                proptest::collection::btree_map(
                    proptest::sample::select(vec![
                        "value",
                        "type",
                        "primary",
                        "givenName",
                        "active",
                        "display"
                    ]),
                    inner,
                    0..3
                )
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
            ]
        });
        proptest::option::of(value)
    }

    fn operation() -> impl Strategy<Value = Value> {
        (proptest::sample::select(vec!["add", "Replace", "REMOVE"]), path(), value()).prop_map(
            |(op, path, value)| {
                let mut operation = json!({"op": op});
                if let Some(path) = path {
                    operation["path"] = json!(path);
                }
                if let Some(value) = value {
                    operation["value"] = value;
                }
                operation
            },
        )
    }

    proptest! {
        #[test]
        fn arbitrary_operations_never_panic_and_keep_the_resource_well_formed(
            operations in proptest::collection::vec(operation(), 1..4)
        ) {
            let user = stored_user();
            let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations});
            if let Ok(request) = PatchRequest::from_json(&body)
                && let Ok(outcome) = apply(&user, &USER, &request)
            {
                let patched = &outcome.resource;
                prop_assert_eq!(&patched["id"], &user["id"]);
                prop_assert_eq!(&patched["meta"], &user["meta"]);
                prop_assert!(patched["userName"].as_str().is_some_and(|u| !u.is_empty()));
                prop_assert!(patched.get("password").is_none());
                let primaries = patched["emails"].as_array().map_or(0, |emails| {
                    emails.iter().filter(|e| e["primary"] == json!(true)).count()
                });
                prop_assert!(primaries <= 1, "{}", patched);
            }
        }
    }
}
