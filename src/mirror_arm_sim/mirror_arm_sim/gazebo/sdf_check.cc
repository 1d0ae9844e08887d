// sdf_check: load an SDFormat file with the real SDFormat library (libsdformat), run the same
// graph checks as `gz sdf -k`, and print a JSON summary of what the library resolved: every
// model's links, joints (pose, axis expressed in the model frame, limits) and sensors (pose,
// camera intrinsics), all with poses resolved by libsdformat's frame semantics.
//
// Build (done on demand by mirror_arm_sim.gazebo.parsers):
//   g++ -O1 -std=c++17 sdf_check.cc $(pkg-config --cflags --libs sdformat12) -o sdf_check
// (sdformat12 is Debian 12's libsdformat-dev; sdformat13/14 from Gazebo's own packages work too.)
// Usage: sdf_check FILE.sdf   -> JSON on stdout; exit 0 when there are no errors.
#include <sdf/sdf.hh>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#if SDF_MAJOR_VERSION >= 13
namespace gzmath = gz::math;
#else
namespace gzmath = ignition::math;
#endif

namespace
{
using Pose = gzmath::Pose3d;

std::string Esc(const std::string &_s)
{
  std::ostringstream o;
  for (char c : _s)
  {
    if (c == '"' || c == '\\') o << '\\' << c;
    else if (c == '\n') o << "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) o << ' ';
    else o << c;
  }
  return o.str();
}

// JSON number; non-finite values as Python's json module writes them.
std::string Num(double _v)
{
  if (std::isnan(_v)) return "NaN";
  if (std::isinf(_v)) return _v > 0 ? "Infinity" : "-Infinity";
  std::ostringstream o;
  o << std::setprecision(17) << _v;
  return o.str();
}

std::string PoseJson(const Pose &_p)
{
  std::ostringstream o;
  o << std::setprecision(17) << "{\"pos\": [" << _p.Pos().X() << ", " << _p.Pos().Y() << ", "
    << _p.Pos().Z() << "], \"quat\": [" << _p.Rot().W() << ", " << _p.Rot().X() << ", "
    << _p.Rot().Y() << ", " << _p.Rot().Z() << "]}";
  return o.str();
}

void Collect(const sdf::Errors &_in, std::vector<std::string> &_out, const std::string &_ctx)
{
  for (const auto &e : _in)
  {
    std::ostringstream o;
    o << _ctx << ": " << e;
    _out.push_back(o.str());
  }
}
}  // namespace

int main(int argc, char **argv)
{
  if (argc != 2)
  {
    std::cerr << "usage: sdf_check FILE.sdf\n";
    return 2;
  }
  std::vector<std::string> errors;
  sdf::Root root;
  Collect(root.Load(argv[1]), errors, "load");

  // The checks `gz sdf -k` runs after loading.
  if (root.Element())
  {
    // sibling names must be unique (plugins excluded: their name is the class to load)
    if (!sdf::recursiveSiblingUniqueNames(root.Element()))
      errors.push_back("check: non-unique sibling names");
    if (!sdf::recursiveSiblingNoDoubleColonInNames(root.Element()))
      errors.push_back("check: '::' in a sibling name");
  }
  if (!sdf::checkCanonicalLinkNames(&root)) errors.push_back("check: canonical link names");
  if (!sdf::checkJointParentChildLinkNames(&root)) errors.push_back("check: joint parent/child names");
  if (!sdf::checkFrameAttachedToGraph(&root)) errors.push_back("check: frame attached_to graph");
  if (!sdf::checkPoseRelativeToGraph(&root)) errors.push_back("check: pose relative_to graph");

  std::ostringstream js;
  js << std::setprecision(17) << "{\"sdf_version\": \"" << Esc(root.Version()) << "\", \"worlds\": [";
  for (uint64_t w = 0; w < root.WorldCount(); ++w)
  {
    const sdf::World *world = root.WorldByIndex(w);
    js << (w ? ", " : "") << "{\"name\": \"" << Esc(world->Name()) << "\", \"models\": [";
    for (uint64_t m = 0; m < world->ModelCount(); ++m)
    {
      const sdf::Model *model = world->ModelByIndex(m);
      Pose mPose;
      Collect(model->SemanticPose().Resolve(mPose, "world"), errors, "model " + model->Name());
      js << (m ? ", " : "") << "{\"name\": \"" << Esc(model->Name()) << "\", \"static\": "
         << (model->Static() ? "true" : "false") << ", \"pose\": " << PoseJson(mPose)
         << ", \"links\": [";
      for (uint64_t l = 0; l < model->LinkCount(); ++l)
      {
        const sdf::Link *link = model->LinkByIndex(l);
        Pose lPose;
        Collect(link->SemanticPose().Resolve(lPose, "__model__"), errors, "link " + link->Name());
        js << (l ? ", " : "") << "{\"name\": \"" << Esc(link->Name()) << "\", \"pose\": "
           << PoseJson(mPose * lPose) << ", \"mass\": " << link->Inertial().MassMatrix().Mass()
           << ", \"sensors\": [";
        for (uint64_t s = 0; s < link->SensorCount(); ++s)
        {
          const sdf::Sensor *sensor = link->SensorByIndex(s);
          Pose sPose;
          Collect(sensor->SemanticPose().Resolve(sPose, link->Name()), errors,
                  "sensor " + sensor->Name());
          js << (s ? ", " : "") << "{\"name\": \"" << Esc(sensor->Name()) << "\", \"type\": \""
             << Esc(sensor->TypeStr()) << "\", \"topic\": \"" << Esc(sensor->Topic())
             << "\", \"update_rate\": " << sensor->UpdateRate()
             << ", \"pose\": " << PoseJson(mPose * lPose * sPose);
          if (const sdf::Camera *cam = sensor->CameraSensor())
          {
            js << ", \"camera\": {\"horizontal_fov\": " << cam->HorizontalFov().Radian()
               << ", \"width\": " << cam->ImageWidth() << ", \"height\": " << cam->ImageHeight()
               << ", \"near\": " << Num(cam->NearClip()) << ", \"far\": " << Num(cam->FarClip())
               << ", \"format\": \"" << Esc(cam->PixelFormatStr()) << "\"}";
          }
          js << "}";
        }
        js << "]}";
      }
      js << "], \"joints\": [";
      for (uint64_t j = 0; j < model->JointCount(); ++j)
      {
        const sdf::Joint *joint = model->JointByIndex(j);
        Pose jPose;
        Collect(joint->SemanticPose().Resolve(jPose, "__model__"), errors, "joint " + joint->Name());
        std::string type;
        switch (joint->Type())
        {
          case sdf::JointType::REVOLUTE: type = "revolute"; break;
          case sdf::JointType::PRISMATIC: type = "prismatic"; break;
          case sdf::JointType::FIXED: type = "fixed"; break;
          default: type = "other"; break;
        }
        js << (j ? ", " : "") << "{\"name\": \"" << Esc(joint->Name()) << "\", \"type\": \"" << type
           << "\", \"parent\": \"" << Esc(joint->ParentLinkName()) << "\", \"child\": \""
           << Esc(joint->ChildLinkName()) << "\", \"pose\": " << PoseJson(mPose * jPose);
        if (const sdf::JointAxis *axis = joint->Axis(0))
        {
          gzmath::Vector3d xyz;
          Collect(axis->ResolveXyz(xyz, "__model__"), errors, "axis " + joint->Name());
          xyz = mPose.Rot().RotateVector(xyz);
          js << ", \"axis\": [" << xyz.X() << ", " << xyz.Y() << ", " << xyz.Z()
             << "], \"lower\": " << Num(axis->Lower()) << ", \"upper\": " << Num(axis->Upper())
             << ", \"effort\": " << Num(axis->Effort()) << ", \"velocity\": " << Num(axis->MaxVelocity());
        }
        js << "}";
      }
      js << "], \"plugins\": [";
      const sdf::ElementPtr mElem = model->Element();
      bool first = true;
      for (sdf::ElementPtr p = mElem ? mElem->GetElementImpl("plugin") : nullptr; p;
           p = p->GetNextElement("plugin"))
      {
        js << (first ? "" : ", ") << "\"" << Esc(p->Get<std::string>("name")) << "\"";
        first = false;
      }
      js << "]}";
    }
    js << "]}";
  }
  js << "], \"errors\": [";
  for (size_t i = 0; i < errors.size(); ++i)
    js << (i ? ", " : "") << "\"" << Esc(errors[i]) << "\"";
  js << "]}";
  std::cout << js.str() << std::endl;
  return errors.empty() ? 0 : 1;
}
