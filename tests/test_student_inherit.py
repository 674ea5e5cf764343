"""A student that inherits its teacher's SAM prompt encoder and mask decoder decodes as the teacher does."""

import pytest
import torch

from edge_medsam.errors import EdgeMedSAMError
from edge_medsam.models.reference import build_reference
from edge_medsam.models.student import EdgeStudent, StudentConfig
from edge_medsam.models.student.config import student_preset
from edge_medsam.models.student.encoder import EncoderOutput
from edge_medsam.models.student.inherit import embedding_scale, inherit_sam_decoder, is_inherited
from edge_medsam.models.teachers.base import TeacherFeatures
from edge_medsam.prompt_labels import BOX_LABELS

SIZE = 128


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    teacher = build_reference("litemedsam", image_size=SIZE, embed_dims=(16, 32, 40, 64),
                              depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4)).eval()
    config = StudentConfig(image_size=SIZE, embed_dim=256, decoder_heads=8, decoder_mlp_dim=2048, num_masks=4,
                           embedding_stride=8)
    student = EdgeStudent(config).eval()
    inherit_sam_decoder(student, teacher)
    grid = config.grid
    teacher.prompt_encoder.image_embedding_size = (grid, grid)  # the teacher's decoder on the student's grid
    return teacher, student


def test_inherited_decoder_gives_the_teachers_masks_and_scores(pair):
    teacher, student = pair
    grid = student.config.grid
    with torch.no_grad():
        features, self_prompt = student.encode(torch.randn(1, 3, SIZE, SIZE), torch.tensor([0]))
        embedding = torch.randn(1, 256, grid, grid) * 0.2
        features = EncoderOutput(embedding, features.skip8, features.skip4, features.modality_logits,
                                 features.modality)
        boxes = torch.tensor([[10.0, 20.0, 70.0, 90.0], [40.0, 30.0, 120.0, 100.0]])
        points, labels = boxes.reshape(-1, 2, 2), torch.tensor(BOX_LABELS).expand(len(boxes), 2)
        for modality in (0, 5):
            features.modality = torch.tensor([modality])
            masks, iou = student.decode(features, self_prompt, image_index=torch.zeros(2, dtype=torch.long),
                                        points=points, labels=labels)
            single, single_iou = teacher.decode(TeacherFeatures(embedding), boxes=boxes[None], multimask=False)
            multi, multi_iou = teacher.decode(TeacherFeatures(embedding), boxes=boxes[None], multimask=True)
            assert masks.shape == (2, 4, 4 * grid, 4 * grid)
            torch.testing.assert_close(masks[:, :1], single, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(masks[:, 1:], multi, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(iou, torch.cat([single_iou, multi_iou], 1), atol=1e-5, rtol=1e-5)


def test_the_students_embedding_ends_in_the_teachers_normalisation(pair):
    teacher, student = pair
    norm = teacher.image_encoder.neck[-1]
    torch.testing.assert_close(student.encoder.out[1].weight, norm.weight)
    torch.testing.assert_close(embedding_scale(teacher), norm.weight.abs().clamp(min=1e-3))
    names = [name for name, _ in student.named_parameters() if is_inherited(name)]
    assert any(n.startswith("decoder.transformer.") for n in names) and "sppg.no_prompt" in names
    assert not any(n.startswith(("decoder.skip1", "encoder.trunk", "prompt_encoder.spatial")) for n in names)


def test_a_student_of_another_shape_is_refused_in_one_line(pair):
    teacher, _ = pair
    with pytest.raises(EdgeMedSAMError, match="does not have the teacher's shape") as error:
        inherit_sam_decoder(EdgeStudent(StudentConfig(image_size=SIZE)), teacher)
    assert "lite" in str(error.value) and "\n" not in str(error.value)


def test_the_lite_preset_has_the_litemedsam_decoder_shape():
    config = student_preset("lite")
    assert (config.embed_dim, config.decoder_heads, config.decoder_mlp_dim, config.grid) == (256, 8, 2048, 32)
    with pytest.raises(EdgeMedSAMError, match="embedding stride"):
        StudentConfig(embedding_stride=4)
