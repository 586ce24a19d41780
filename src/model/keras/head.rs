//! A twin head of ordinary layers (Subtract, Multiply, Concatenate, Dot, Dense,
//! BatchNormalization...) as a graph that runs on the GPU after the encoder, in the same
//! submit: [`LayerHead`]. Its input is the pair of embeddings as the runner stacks them;
//! each read of the shared encoder's output becomes a [`TwinSide`] (the left or right
//! twin's rows), a `Lambda` becomes what `--lambda` says it computes (a distance per pair
//! by default when its readers take one value per pair), every other layer is built from
//! the class table as in an encoder.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

use super::config::{activation_name, Entry, ModelView};
use super::file::{LayerWeights, Source};
use super::layers;
use crate::error::{Error, Result};
use crate::layers::{Concatenate, LayerOp, Merge, MergeKind, TwinDistance, TwinSide};
use crate::model::weights::Weights;
use crate::model::{LambdaKind, Layer, LayerHead, LoadOptions, ModelSpec, Score, TwinHead};

/// The twin being read: its shared encoder and the model's two inputs.
pub(super) struct Twin<'a> {
    pub encoder: &'a str,
    pub inputs: &'a [String; 2],
}

/// Builds the head `names` (config order, which is topological) of `top` as a graph.
pub(super) fn layer_head(
    source: &Source,
    top: &ModelView,
    twin: Twin,
    names: &[String],
    encoder: &ModelSpec,
    weights: &LayerWeights,
    options: &LoadOptions,
) -> Result<TwinHead> {
    let file = source.file.as_str();
    let format_error = |reason: String| Error::ModelFormat { file: file.to_string(), reason };
    let embedding = encoder.embedding_shape(1)?;
    if encoder.is_sequence() && encoder.embedding_shape(2)? != embedding {
        return Err(format_error(format!(
            "the twin's head reads the encoder {:?}, whose output changes with the sequence length: a head runs \
             after an encoder with one embedding per sample (end it with pooling or a recurrent layer that \
             returns its last state)",
            twin.encoder
        )));
    }
    let entries: Vec<&Entry> = names.iter().filter_map(|name| top.entry(name)).collect();
    let shared = top.entry(twin.encoder).ok_or_else(|| format_error(format!("no layer {:?}", twin.encoder)))?;
    // Which twin each call of the encoder computes: the input it reads.
    let sides: Vec<usize> = shared
        .calls()
        .iter()
        .map(|call| usize::from(call.first().is_some_and(|i| i.layer == twin.inputs[1])))
        .collect();
    let mut tensors = BTreeMap::new();
    for entry in &entries {
        tensors.extend(weights.get(&entry.name).cloned().unwrap_or_default());
    }
    let mut builder = HeadBuilder {
        file,
        twin: &twin,
        sides,
        weights: Weights::from_map(&source.weights_file(), tensors),
        layers: Vec::new(),
        shapes: vec![std::iter::once(1).chain([2]).chain(embedding.iter().copied()).collect()],
        values: HashMap::new(),
        side_values: [None, None],
        summary: Vec::new(),
        options,
    };
    for entry in &entries {
        builder.add(entry, &entries)?;
    }
    let HeadBuilder { weights, layers, shapes, summary, .. } = builder;
    weights.finish()?;
    let last = entries.last().ok_or_else(|| format_error("the twin has no head layers".into()))?;
    if top.outputs != [last.name.clone()] {
        return Err(format_error(format!(
            "the twin's outputs are {:?}: a head runs when the model's one output is its last layer {:?}",
            top.outputs, last.name
        )));
    }
    let output = shapes.last().map(|s| s[1..].to_vec()).unwrap_or_default();
    if output.iter().product::<usize>() != 1 {
        return Err(format_error(format!(
            "the twin's head {:?} outputs {output:?} per pair: `siamese pairs` prints one value per pair \
             (a distance, similarity or probability)",
            last.name
        )));
    }
    let spec = ModelSpec { name: format!("{} head", top.name), input_shape: shapes[0][1..].to_vec(), layers };
    spec.shapes(1)?;
    let score = score_of(last, &spec, options);
    Ok(TwinHead::Layers(LayerHead { spec, score, summary: summary.join(" -> ") }))
}

/// What the head's last layer makes of its output.
fn score_of(last: &Entry, spec: &ModelSpec, options: &LoadOptions) -> Score {
    let activation = last.config.get("activation").and_then(activation_name);
    match (last.class, activation) {
        (_, Some("sigmoid")) => Score::Probability,
        ("Dot", _) => Score::Similarity { cosine: last.flag("normalize", false) },
        ("Lambda", _) if spec.layers.last().and_then(|l| l.downcast::<TwinDistance>()).is_some() => {
            Score::Distance(options.lambda_distance)
        }
        _ => Score::Score,
    }
}

struct HeadBuilder<'a, 'b> {
    file: &'a str,
    twin: &'a Twin<'b>,
    /// The twin (0 left, 1 right) of each encoder call.
    sides: Vec<usize>,
    weights: Weights,
    layers: Vec<Layer>,
    /// Shapes of the values so far, batch of 1 pair first.
    shapes: Vec<Vec<usize>>,
    /// The value of each head layer built, by name.
    values: HashMap<String, usize>,
    /// The [`TwinSide`] value of each twin, once read.
    side_values: [Option<usize>; 2],
    summary: Vec<String>,
    options: &'a LoadOptions,
}

impl HeadBuilder<'_, '_> {
    fn error(&self, reason: String) -> Error {
        Error::ModelFormat { file: self.file.to_string(), reason }
    }

    fn push(&mut self, name: String, op: Arc<dyn LayerOp>, inputs: Vec<usize>) -> Result<usize> {
        let input_shapes: Vec<&[usize]> = inputs.iter().map(|&v| self.shapes[v].as_slice()).collect();
        let shape = op.output_shape(&input_shapes).map_err(|e| match e {
            Error::ShapeMismatch { op, expected, got } => {
                Error::ShapeMismatch { op: format!("head layer {name:?} ({op})"), expected, got }
            }
            other => other,
        })?;
        self.shapes.push(shape);
        self.layers.push(Layer { name, op, inputs });
        Ok(self.layers.len())
    }

    /// The value holding twin `side`'s embeddings (a [`TwinSide`] node, added once).
    fn side(&mut self, side: usize) -> Result<usize> {
        if let Some(value) = self.side_values[side] {
            return Ok(value);
        }
        let name = format!("{} ({} twin)", self.twin.encoder, ["left", "right"][side]);
        let value = self.push(name, Arc::new(TwinSide { side }), vec![0])?;
        self.side_values[side] = Some(value);
        Ok(value)
    }

    /// Adds one head layer; `all` are the head's entries (to see what reads a Lambda).
    fn add(&mut self, entry: &Entry, all: &[&Entry]) -> Result<()> {
        let calls = entry.calls();
        let [call] = calls.as_slice() else {
            return Err(self.error(format!(
                "head layer {:?} ({}) is called {} times: a head layer runs once per pair",
                entry.name,
                entry.class,
                calls.len()
            )));
        };
        let mut inputs = Vec::new();
        let mut sides = Vec::new();
        for input in call {
            let value = if input.layer == self.twin.encoder {
                let side = *self.sides.get(input.node as usize).ok_or_else(|| {
                    self.error(format!("head layer {:?} reads call {} of the encoder", entry.name, input.node))
                })?;
                sides.push(side);
                self.side(side)?
            } else if let Some(&value) = self.values.get(input.layer) {
                value
            } else if self.twin.inputs.iter().any(|i| i == input.layer) {
                return Err(self.error(format!(
                    "head layer {:?} reads the model's input {:?} directly: a head may only read the shared \
                     encoder's outputs and other head layers",
                    entry.name, input.layer
                )));
            } else {
                return Err(self.error(format!("head layer {:?} reads unknown layer {:?}", entry.name, input.layer)));
            };
            inputs.push(value);
        }
        let (op, inputs, said): (Arc<dyn LayerOp>, Vec<usize>, String) = if entry.class == "Lambda" {
            self.lambda(entry, all, inputs, &sides)?
        } else {
            let input_shapes: Vec<&[usize]> = inputs.iter().map(|&v| self.shapes[v].as_slice()).collect();
            let mut ctx = layers::Context {
                entry,
                input: input_shapes.first().copied().unwrap_or(&[]),
                inputs: &input_shapes,
                weights: &mut self.weights,
                file: self.file,
            };
            let op = layers::build(&mut ctx)?;
            if op.arity() != inputs.len() {
                return Err(self.error(format!(
                    "head layer {:?} ({}) reads {} inputs, but it takes {}",
                    entry.name,
                    entry.class,
                    inputs.len(),
                    op.arity()
                )));
            }
            (op, inputs, entry.class.to_string())
        };
        let value = self.push(entry.name.clone(), op, inputs)?;
        self.values.insert(entry.name.clone(), value);
        self.summary.push(said);
        Ok(())
    }

    /// What stands for a Lambda: `--lambda`'s op, or a distance when its readers take one
    /// value per pair.
    fn lambda(
        &mut self,
        entry: &Entry,
        all: &[&Entry],
        inputs: Vec<usize>,
        sides: &[usize],
    ) -> Result<(Arc<dyn LayerOp>, Vec<usize>, String)> {
        let both_twins = sides.len() == 2 && inputs.len() == 2 && sides[0] != sides[1];
        let kind = match self.options.lambda {
            Some(kind) => kind,
            None => match read_width(entry, all) {
                Some(1) => LambdaKind::Distance,
                width => {
                    let what = match width {
                        Some(n) => format!("returns {n} values per pair (what its readers take)"),
                        None => "returns values of a shape the file does not record".into(),
                    };
                    return Err(self.error(format!(
                        "the head's Lambda {:?} (Python code, which cannot run here) {what}: say what it \
                         computes with --lambda abs-diff|squared-diff|product|concat (or --lambda distance for \
                         one distance per pair), or --no-head to compare the embeddings by --distance",
                        entry.name
                    )));
                }
            },
        };
        if !both_twins {
            return Err(self.error(format!(
                "the head's Lambda {:?} reads {} values; --lambda {kind} stands for a Lambda that reads the two \
                 twins' embeddings (the shared encoder's two outputs)",
                entry.name,
                inputs.len()
            )));
        }
        let said = format!("Lambda {:?} as {kind}", entry.name);
        let merge = |kind| -> Result<Arc<dyn LayerOp>> { Ok(Arc::new(Merge::new(kind, 2)?)) };
        Ok(match kind {
            LambdaKind::Distance => {
                let metric = self.options.lambda_distance;
                (
                    Arc::new(TwinDistance { metric }),
                    vec![0],
                    format!("Lambda {:?} as the {metric} distance", entry.name),
                )
            }
            LambdaKind::AbsDiff => (merge(MergeKind::AbsDifference)?, inputs, said),
            LambdaKind::SquaredDiff => (merge(MergeKind::SquaredDifference)?, inputs, said),
            LambdaKind::Product => (merge(MergeKind::Multiply)?, inputs, said),
            LambdaKind::Concat => {
                let axis = self.shapes[inputs[0]].len() - 1;
                (Arc::new(Concatenate { axis, arity: 2 }), inputs, said)
            }
        })
    }
}

/// The last-axis size a Lambda's readers take from it, as Keras 3 records the tensor
/// shapes a call reads (None when no reader records one). A Lambda that ends the model
/// has none.
fn read_width(lambda: &Entry, all: &[&Entry]) -> Option<u64> {
    let recorded = |shape: &Value| shape.as_array()?.last()?.as_u64();
    all.iter()
        .flat_map(|e| e.calls().into_iter().flatten())
        .filter(|input| input.layer == lambda.name)
        .find_map(|input| input.shape.and_then(recorded))
        .or_else(|| {
            // A Lambda's own `output_shape` setting (without the batch axis).
            lambda.config.get("output_shape").and_then(|s| s.as_array()?.last()?.as_u64())
        })
}
