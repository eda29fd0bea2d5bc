package main

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// yamlKeyError turns a strict-decoding failure into one line naming the key by
// its full dotted path (`config milvus.adress (line 2): unknown key`), instead of
// yaml's multi-line report that names only the last segment. It returns nil when
// it finds no unknown key (the caller reports the original error then).
func yamlKeyError(b []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil || len(root.Content) == 0 {
		return nil
	}
	return unknownKey(root.Content[0], reflect.TypeFor[Config](), "")
}

func unknownKey(n *yaml.Node, t reflect.Type, prefix string) error {
	if n.Kind != yaml.MappingNode || t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Duration]() {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if prefix != "" {
			key = prefix + "." + k.Value
		}
		f, ok := fieldByTag(t, k.Value)
		if !ok {
			var known []string
			for j := range t.NumField() {
				known = append(known, strings.Split(t.Field(j).Tag.Get("yaml"), ",")[0])
			}
			return fmt.Errorf("config %s (line %d): unknown key (known here: %s)", key, k.Line, strings.Join(known, ", "))
		}
		if err := unknownKey(v, f.Type, key); err != nil {
			return err
		}
	}
	return nil
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if strings.Split(f.Tag.Get("yaml"), ",")[0] == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// yamlTypeError names the key whose value does not parse as its type, by the
// same rules as the environment and flags (`config ingest.batch_size (line 3):
// "lots" is not an integer`), where yaml reports "cannot unmarshal !!str" with
// no key. It returns nil when every leaf parses.
func yamlTypeError(b []byte) error {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil || len(root.Content) == 0 {
		return nil
	}
	byKey := map[string]leaf{}
	for _, l := range leaves(DefaultConfig()) {
		byKey[l.key] = l
	}
	return badValue(root.Content[0], byKey, "")
}

func badValue(n *yaml.Node, byKey map[string]leaf, prefix string) error {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if prefix != "" {
			key = prefix + "." + k.Value
		}
		l, isLeaf := byKey[key]
		if !isLeaf {
			if err := badValue(v, byKey, key); err != nil {
				return err
			}
			continue
		}
		_, isList := l.v.Interface().([]string)
		switch {
		case v.Kind == yaml.SequenceNode && isList:
			for _, item := range v.Content {
				if item.Kind != yaml.ScalarNode {
					return fmt.Errorf("config %s (line %d): list items must be strings", key, item.Line)
				}
			}
		case v.Kind == yaml.ScalarNode:
			if v.Tag == "!!null" {
				continue
			}
			if err := l.set(v.Value); err != nil {
				return fmt.Errorf("config %s (line %d): %w", key, v.Line, err)
			}
		default:
			return fmt.Errorf("config %s (line %d): a %s, not a single value", key, v.Line, kindName(v.Kind))
		}
	}
	return nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.SequenceNode:
		return "list"
	case yaml.MappingNode:
		return "mapping"
	default:
		return "value of another kind"
	}
}
